"""The notifier: renders queued notifications and hands them to the backend.

The ``notification`` table has a unique key on shipment and update type, and
a row leaves the queue only as ``sent``, ``suppressed`` or ``failed``. So each
update goes out once, except for the resend window described in ``_deliver``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlmodel import col

from extractors.carriers import carrier_name
from mailhandler.optout import REASON as OPTED_OUT
from mailhandler.optout import is_opted_out, unsubscribe_headers
from mailhandler.outbound import (
    Backend,
    Envelope,
    OutboundError,
    build_message,
    make_backend,
)
from mailhandler.render import (
    TemplateError,
    UpdateContext,
    pick_language,
    render_update,
)
from mailhandler.runner import retry_delay, wait_for_work
from mailhandler.sanitize import display_name
from mailhandler.settings import Settings
from mailhandler.store import transaction
from mailhandler.store.models import (
    Notification,
    NotificationState,
    Order,
    OrderState,
    Shipment,
    Shop,
    TrackingEvent,
    utcnow,
)
from mailhandler.store.queue import claim, new_owner, release

log = logging.getLogger("bcctrack.notify")

_MAX_REASON = 2000
_UNCONFIRMED = (
    "the process stopped while the relay was taking the email; not sent again "
    "to avoid a duplicate"
)


class LeaseLostError(Exception):
    """Another process took over the notification while this one worked on it."""


@dataclass(frozen=True)
class _Job:
    notification: Notification
    order: Order
    shipment: Shipment
    shop: Shop
    opted_out: bool = False
    # Where the parcel is, from the newest tracking event that names a place.
    location: str | None = None


class Notifier:
    """Sends pending notifications through one backend."""

    def __init__(self, engine: Engine, settings: Settings, backend: Backend) -> None:
        self.engine = engine
        self.settings = settings
        self.backend = backend
        self._shop_backends: dict[str, Backend] = {}
        self.owner = new_owner("notifier")
        self.lease = timedelta(seconds=settings.lease_seconds)
        self.max_event_age = timedelta(hours=settings.max_event_age_hours)

    def backend_for(self, shop: Shop) -> Backend:
        """Return the shop's own relay if it has one, else the default backend."""
        if not shop.outbound:
            return self.backend
        if shop.outbound not in self._shop_backends:
            self._shop_backends[shop.outbound] = make_backend(
                shop.outbound, self.settings.outbox_dir
            )
        return self._shop_backends[shop.outbound]

    def claim_next(self) -> int | None:
        """Lease the next due notification; return its id or None."""
        ids = claim(
            self.engine, Notification, NotificationState.PENDING, self.owner, self.lease
        )
        return ids[0] if ids else None

    async def send(self, notification_id: int) -> NotificationState | None:
        """Render and send one claimed notification; return its new state."""
        try:
            job = await asyncio.to_thread(self._load, notification_id)
            backend = self.backend_for(job.shop)
            if job.notification.sending_at is not None and not backend.idempotent:
                # An earlier process handed this email to the relay and died
                # before it learnt the result. Sending again could make a
                # duplicate, so the update stops here and says so.
                log.warning(
                    "notification %s: the relay may or may not have it, not sent again",
                    notification_id,
                )
                return await self._finish(
                    notification_id, NotificationState.UNCONFIRMED, reason=_UNCONFIRMED
                )
            skip = self._skip_reason(job)
            if skip is not None:
                return await self._finish(
                    notification_id, NotificationState.SUPPRESSED, reason=skip
                )
            message_id = await self._deliver(job)
        except Exception as error:
            return await self._record_failure(notification_id, error)
        return await self._finish(
            notification_id, NotificationState.SENT, message_id=message_id
        )

    def _load(self, notification_id: int) -> _Job:
        with transaction(self.engine) as session:
            notification = session.get(Notification, notification_id)
            if notification is None:
                raise LookupError(f"notification {notification_id} not found")
            order = session.get(Order, notification.order_id)
            shipment = session.get(Shipment, notification.shipment_id)
            shop = session.get(Shop, notification.shop_id)
            if order is None or shipment is None or shop is None:
                raise LookupError(f"notification {notification_id}: order data missing")
            opted_out = is_opted_out(session, shop.id or 0, notification.recipient)
            location = session.scalars(
                select(col(TrackingEvent.location))
                .where(
                    col(TrackingEvent.shipment_id) == shipment.id,
                    col(TrackingEvent.location).is_not(None),
                )
                .order_by(col(TrackingEvent.occurred_at).desc())
                .limit(1)
            ).first()
            return _Job(notification, order, shipment, shop, opted_out, location)

    def _skip_reason(self, job: _Job) -> str | None:
        # The order may have been cancelled, or the queue may have held the
        # notification past the maximum age, since it was queued.
        if job.order.state == OrderState.CANCELLED:
            return "order cancelled"
        if job.opted_out:
            return OPTED_OUT
        if utcnow() - job.notification.event_at > self.max_event_age:
            return "event older than the maximum age"
        return None

    async def _deliver(self, job: _Job) -> str:
        notification = job.notification
        assert notification.id is not None
        language = pick_language(job.order.language, job.shop.language)
        unsubscribe = unsubscribe_headers(self.settings, notification.id)
        context = UpdateContext(
            shop_name=job.shop.name,
            brand_color=job.shop.brand_color,
            logo_url=job.shop.logo_url,
            order_number=job.order.order_number,
            customer_name=display_name(job.order.customer_name),
            carrier_name=carrier_name(job.shipment.carrier),
            tracking_number=job.shipment.tracking_number,
            tracking_url=job.shipment.tracking_url,
            unsubscribe_url=unsubscribe_link(unsubscribe["List-Unsubscribe"]),
            location=job.location,
        )
        rendered = render_update(notification.update, language, context)
        # The same notification always gets the same Message-ID, so that a
        # resend after a crash is recognisable as the same message.
        message_id = (
            f"<bcctrack.{notification.id}.{notification.update}"
            f"@{self.settings.intake_domain}>"
        )
        envelope = Envelope(
            sender_address=self.settings.sender_address,
            sender_name=job.shop.name,
            recipient_address=notification.recipient,
            recipient_name=display_name(job.order.customer_name),
            message_id=message_id,
            list_unsubscribe=unsubscribe["List-Unsubscribe"],
            list_unsubscribe_post=unsubscribe.get("List-Unsubscribe-Post"),
        )
        message = build_message(rendered, envelope)
        backend = self.backend_for(job.shop)
        notification_id = notification.id

        async def mark_sending() -> None:
            await asyncio.to_thread(self._mark_sending, notification_id, message_id)

        name = f"{notification_id:08d}-{notification.update}"
        await backend.send(message, name, mark_sending)
        log.info(
            "notification %s: %s sent for shipment %s in %s",
            notification.id,
            notification.update,
            job.shipment.id,
            language,
        )
        return message_id

    def _mark_sending(self, notification_id: int, message_id: str) -> None:
        # Committed before the hand-over, so that a process that dies during
        # it leaves a mark for the next claimer.
        with transaction(self.engine) as session:
            marked = session.execute(
                update(Notification)
                .where(
                    col(Notification.id) == notification_id,
                    col(Notification.lease_owner) == self.owner,
                )
                .values(sending_at=utcnow(), message_id=message_id)
            )
            if not marked.rowcount:  # type: ignore[attr-defined]
                raise LeaseLostError(f"notification {notification_id}")

    async def _finish(
        self,
        notification_id: int,
        state: NotificationState,
        reason: str | None = None,
        message_id: str | None = None,
        **extra: Any,
    ) -> NotificationState | None:
        values: dict[str, Any] = {"state": state, "reason": reason, **extra}
        if state == NotificationState.SENT:
            values.update(sent_at=utcnow(), message_id=message_id)
        elif reason:
            log.info("notification %s %s: %s", notification_id, state, reason)
        kept = await asyncio.to_thread(
            release, self.engine, Notification, notification_id, self.owner, **values
        )
        return state if kept else None

    async def _record_failure(
        self, notification_id: int, error: Exception
    ) -> NotificationState | None:
        if isinstance(error, LeaseLostError):
            log.warning("%s: lease lost, leaving it to its new owner", error)
            return None
        reason = f"{type(error).__name__}: {error}"[:_MAX_REASON]
        # Only a rejection by the backend proves that the email did not go
        # out; after any other error the sending mark stays.
        cleared: dict[str, Any] = {}
        if isinstance(error, OutboundError):
            cleared["sending_at"] = None
        attempts = await asyncio.to_thread(self._attempts, notification_id)
        if _permanent(error) or attempts >= self.settings.notify_max_attempts:
            log.error(
                "notification %s failed after %d attempts: %s",
                notification_id,
                attempts,
                reason,
            )
            return await self._finish(
                notification_id, NotificationState.FAILED, reason, **cleared
            )
        next_attempt = utcnow() + retry_delay(attempts, self.settings.retry_delay)
        log.warning(
            "notification %s attempt %d failed, retrying at %s: %s",
            notification_id,
            attempts,
            next_attempt.isoformat(timespec="seconds"),
            reason,
        )
        kept = await asyncio.to_thread(
            release,
            self.engine,
            Notification,
            notification_id,
            self.owner,
            state=NotificationState.PENDING,
            reason=reason,
            next_attempt_at=next_attempt,
            **cleared,
        )
        return NotificationState.PENDING if kept else None

    def _attempts(self, notification_id: int) -> int:
        with transaction(self.engine) as session:
            notification = session.get(Notification, notification_id)
            return notification.attempts if notification is not None else 0

    async def run(self, wake: asyncio.Event, stop: asyncio.Event) -> None:
        """Send notifications until ``stop`` is set."""
        while not stop.is_set():
            try:
                notification_id = await asyncio.to_thread(self.claim_next)
            except Exception:
                log.exception("claiming a notification failed")
                notification_id = None
            if notification_id is None:
                await wait_for_work(wake, stop, self.settings.poll_interval)
                continue
            await self.send(notification_id)


def unsubscribe_link(header: str) -> str:
    """Return the link the email body shows: the https one, else the mailto:."""
    links = [part.strip().strip("<>") for part in header.split(",")]
    for link in links:
        if link.startswith("https://"):
            return link
    return links[0]


def _permanent(error: Exception) -> bool:
    """Tell whether sending again would fail the same way."""
    if isinstance(error, OutboundError):
        return error.permanent
    # A template or address that cannot be rendered stays that way until an
    # admin changes it; retrying only delays the failure.
    return isinstance(error, TemplateError | ValueError)

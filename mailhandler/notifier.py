"""The notifier: renders queued notifications and hands them to the backend.

The ``notification`` table has a unique key on shipment and update type, and
a row leaves the queue only as ``sent``, ``suppressed``, ``failed`` or
``unconfirmed``. So each update goes out once, except for the resend window
described in ``_deliver``. The updates of a group (``notification_groups``)
go out as one email that lists their parcels.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import Session, col

from extractors.carriers import carrier_name
from mailhandler.notification_groups import (
    claim_group,
    held_members,
    release_group,
    update_held,
)
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
    Parcel,
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
from mailhandler.store.queue import new_owner

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
    """One email to send: the claimed notifications of one group."""

    notifications: list[Notification]
    order: Order
    # The parcels, in the order of their notifications.
    shipments: list[Shipment]
    shop: Shop
    opted_out: bool = False
    # Where each parcel is, from its newest tracking event that names a place.
    locations: dict[int, str] = field(default_factory=dict)

    @property
    def head(self) -> Notification:
        """The notification whose id names the email."""
        return self.notifications[0]

    @property
    def ids(self) -> list[int]:
        """The ids of the claimed notifications."""
        return [n.id for n in self.notifications if n.id is not None]


class Notifier:
    """Sends pending notifications through one backend.

    The notifications of one group (several parcels of one order with the
    same update type) are claimed together and go out as one email.
    """

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
        """Lease the next due group of notifications; return its head id or None."""
        return claim_group(self.engine, self.owner, self.lease)

    async def send(self, group_id: int) -> NotificationState | None:
        """Render and send one claimed group as one email; return its new state."""
        try:
            members = await asyncio.to_thread(
                held_members, self.engine, group_id, self.owner
            )
        except Exception:
            # The rows stay leased until the lease ends, as after a crash.
            log.exception("notification %s: reading the claimed group failed", group_id)
            return None
        ids = [n.id for n in members if n.id is not None]
        if not ids:
            log.warning(
                "notification %s: lease lost, leaving it to its new owner", group_id
            )
            return None
        try:
            job = await asyncio.to_thread(self._load, members)
            backend = self.backend_for(job.shop)
            if _handed_over(job) and not backend.idempotent:
                # An earlier process handed this email to the relay and died
                # before it learnt the result. Sending again could make a
                # duplicate, so the update stops here and says so.
                log.warning(
                    "notification %s: the relay may or may not have it, not sent again",
                    _names(ids),
                )
                return await self._finish(
                    ids, NotificationState.UNCONFIRMED, reason=_UNCONFIRMED
                )
            skip = self._skip_reason(job)
            if skip is not None:
                return await self._finish(
                    ids, NotificationState.SUPPRESSED, reason=skip
                )
            message_id = await self._deliver(job)
        except Exception as error:
            return await self._record_failure(ids, error)
        return await self._finish(ids, NotificationState.SENT, message_id=message_id)

    def _load(self, notifications: list[Notification]) -> _Job:
        with transaction(self.engine) as session:
            head = notifications[0]
            order = session.get(Order, head.order_id)
            shop = session.get(Shop, head.shop_id)
            shipments = [session.get(Shipment, n.shipment_id) for n in notifications]
            if order is None or shop is None or None in shipments:
                raise LookupError(f"notification {head.id}: order data missing")
            parcels = [shipment for shipment in shipments if shipment is not None]
            opted_out = is_opted_out(session, shop.id or 0, head.recipient)
            locations = {
                shipment.id: location
                for shipment in parcels
                if shipment.id is not None
                and (location := _location(session, shipment.id)) is not None
            }
            return _Job(notifications, order, parcels, shop, opted_out, locations)

    def _skip_reason(self, job: _Job) -> str | None:
        # The order may have been cancelled, or the queue may have held the
        # notification past the maximum age, since it was queued.
        if job.order.state == OrderState.CANCELLED:
            return "order cancelled"
        if job.opted_out:
            return OPTED_OUT
        oldest = min(n.event_at for n in job.notifications)
        if utcnow() - oldest > self.max_event_age:
            return "event older than the maximum age"
        return None

    async def _deliver(self, job: _Job) -> str:
        head = job.head
        assert head.id is not None
        language = pick_language(job.order.language, job.shop.language)
        unsubscribe = unsubscribe_headers(self.settings, head.id)
        context = UpdateContext(
            shop_name=job.shop.name,
            brand_color=job.shop.brand_color,
            logo_url=job.shop.logo_url,
            order_number=job.order.order_number,
            customer_name=display_name(job.order.customer_name),
            parcels=[_parcel(shipment, job.locations) for shipment in job.shipments],
            unsubscribe_url=unsubscribe_link(unsubscribe["List-Unsubscribe"]),
        )
        rendered = render_update(head.update, language, context)
        # The same group always gets the same Message-ID, that of its lowest
        # notification, so that a resend after a crash is recognisable as
        # the same message.
        message_id = f"<bcctrack.{head.id}.{head.update}@{self.settings.intake_domain}>"
        envelope = Envelope(
            sender_address=self.settings.sender_address,
            sender_name=job.shop.name,
            recipient_address=head.recipient,
            recipient_name=display_name(job.order.customer_name),
            message_id=message_id,
            list_unsubscribe=unsubscribe["List-Unsubscribe"],
            list_unsubscribe_post=unsubscribe.get("List-Unsubscribe-Post"),
        )
        message = build_message(rendered, envelope)
        backend = self.backend_for(job.shop)
        ids = job.ids

        async def mark_sending() -> None:
            await asyncio.to_thread(self._mark_sending, ids, message_id)

        name = f"{head.id:08d}-{head.update}"
        await backend.send(message, name, mark_sending)
        log.info(
            "notification %s: %s sent for shipment %s in %s",
            _names(ids),
            head.update,
            _names([s.id for s in job.shipments if s.id is not None]),
            language,
        )
        return message_id

    def _mark_sending(self, ids: list[int], message_id: str) -> None:
        # Committed on every row of the group before the hand-over, so that
        # a process that dies during it leaves a mark for the next claimer.
        marked = update_held(
            self.engine, ids, self.owner, sending_at=utcnow(), message_id=message_id
        )
        if not marked:
            raise LeaseLostError(f"notification {_names(ids)}")

    async def _finish(
        self,
        ids: list[int],
        state: NotificationState,
        reason: str | None = None,
        message_id: str | None = None,
        **extra: Any,
    ) -> NotificationState | None:
        values: dict[str, Any] = {"state": state, "reason": reason, **extra}
        if state == NotificationState.SENT:
            values.update(sent_at=utcnow(), message_id=message_id)
        elif reason:
            log.info("notification %s %s: %s", _names(ids), state, reason)
        kept = await asyncio.to_thread(
            release_group, self.engine, ids, self.owner, **values
        )
        return state if kept else None

    async def _record_failure(
        self, ids: list[int], error: Exception
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
        attempts = await asyncio.to_thread(self._attempts, ids)
        if _permanent(error) or attempts >= self.settings.notify_max_attempts:
            log.error(
                "notification %s failed after %d attempts: %s",
                _names(ids),
                attempts,
                reason,
            )
            return await self._finish(ids, NotificationState.FAILED, reason, **cleared)
        next_attempt = utcnow() + retry_delay(attempts, self.settings.retry_delay)
        log.warning(
            "notification %s attempt %d failed, retrying at %s: %s",
            _names(ids),
            attempts,
            next_attempt.isoformat(timespec="seconds"),
            reason,
        )
        kept = await asyncio.to_thread(
            release_group,
            self.engine,
            ids,
            self.owner,
            state=NotificationState.PENDING,
            reason=reason,
            next_attempt_at=next_attempt,
            **cleared,
        )
        return NotificationState.PENDING if kept else None

    def _attempts(self, ids: list[int]) -> int:
        with transaction(self.engine) as session:
            counts = session.scalars(
                select(col(Notification.attempts)).where(col(Notification.id).in_(ids))
            )
            return max(counts, default=0)

    async def run(self, wake: asyncio.Event, stop: asyncio.Event) -> None:
        """Send notifications until ``stop`` is set."""
        while not stop.is_set():
            try:
                group_id = await asyncio.to_thread(self.claim_next)
            except Exception:
                log.exception("claiming a notification failed")
                group_id = None
            if group_id is None:
                await wait_for_work(wake, stop, self.settings.poll_interval)
                continue
            await self.send(group_id)


def unsubscribe_link(header: str) -> str:
    """Return the link the email body shows: the https one, else the mailto:."""
    links = [part.strip().strip("<>") for part in header.split(",")]
    for link in links:
        if link.startswith("https://"):
            return link
    return links[0]


def _handed_over(job: _Job) -> bool:
    return any(n.sending_at is not None for n in job.notifications)


def _names(ids: list[int]) -> str:
    """Return ids for a log line: ``7``, or ``7+8+9`` for a group."""
    return "+".join(str(i) for i in ids)


def _location(session: Session, shipment_id: int) -> str | None:
    return session.scalars(
        select(col(TrackingEvent.location))
        .where(
            col(TrackingEvent.shipment_id) == shipment_id,
            col(TrackingEvent.location).is_not(None),
        )
        .order_by(col(TrackingEvent.occurred_at).desc())
        .limit(1)
    ).first()


def _parcel(shipment: Shipment, locations: dict[int, str]) -> Parcel:
    name = carrier_name(shipment.carrier)
    if shipment.carrier == "other":
        name = shipment.carrier_name
    return Parcel(
        tracking_number=shipment.tracking_number,
        carrier_name=name,
        tracking_url=shipment.tracking_url,
        location=locations.get(shipment.id or 0),
    )


def _permanent(error: Exception) -> bool:
    """Tell whether sending again would fail the same way."""
    if isinstance(error, OutboundError):
        return error.permanent
    # A template or address that cannot be rendered stays that way until an
    # admin changes it; retrying only delays the failure.
    return isinstance(error, TemplateError | ValueError)

"""The poller: asks the carriers about due shipments and records their news.

Each round claims due ``shipment_poll`` rows with a lease, groups their
shipments by route (adapter and credential), and sends each group's numbers
in batches of the adapter's ``max_batch``. Every call is reserved first in
the credential's shared budget (``carrier_accounts``), so several pollers
together keep the carrier's interval, daily quota and ``Retry-After``. New
events go through ``record_status``, which moves the shipment and queues
the customer updates. A failed call never loses a shipment: its poll is
released with a later ``next_attempt_at`` and is claimed again then.

``run`` starts a round whenever polls are due and fewer than
``poll_batch_size`` are in progress, without waiting for earlier rounds. So
a carrier whose next call slot is far away holds up only its own shipments.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeAlias

from sqlalchemy import Engine, func, select
from sqlmodel import col

from mailhandler import carrier_accounts
from mailhandler.carrier_accounts import Resumed, key_fingerprint, waiting_reason
from mailhandler.carriers import (
    CarrierAdapter,
    CarrierAuthError,
    CarrierError,
    CarrierRateLimited,
    CarrierRegistry,
    CarrierResponseError,
    Credentials,
    Route,
    TrackingRequest,
    TrackingResult,
)
from mailhandler.polls import (
    TERMINAL,
    adopt_new_shipments,
    jittered,
    make_due,
    poll_interval,
)
from mailhandler.runner import retry_delay, wait_for_work
from mailhandler.settings import Settings
from mailhandler.store import transaction
from mailhandler.store.models import (
    CarrierCredential,
    Notification,
    NotificationState,
    Order,
    PollState,
    Shipment,
    ShipmentPoll,
    ShipmentStatus,
    Shop,
    TrackingEvent,
    utcnow,
)
from mailhandler.store.queue import claim, new_owner, release
from mailhandler.triggers import (
    StatusEvent,
    group_updates,
    is_progress,
    record_status,
)

log = logging.getLogger("bcctrack.poller")

S = ShipmentStatus
_MAX_ERROR = 2000
STOP = "the poller is stopping"
SUPERSEDED = "superseded by a later update from the same poll"

# Consecutive failed calls (5xx, timeouts, bad responses) that a credential
# takes without resting. A 5xx may concern one number only, because DHL, UPS
# and USPS take one number per call. So one failure backs off only its own
# shipment, and three in a row look like an outage of the carrier.
TOLERATED_ERRORS = 2


class LeaseLostError(Exception):
    """Another process took over the poll while this one worked on it."""


@dataclass(frozen=True)
class PollJob:
    """One claimed poll with what the poller needs to know about it."""

    poll_id: int
    shipment_id: int
    tracking_number: str
    carrier: str | None
    status: ShipmentStatus
    last_news_at: datetime
    # Claims since the last successful poll, this one included.
    attempts: int
    shop_credentials: Mapping[str, Credentials]
    shop_slug: str = ""
    shop_removed: bool = False

    def request(self, route: Route) -> TrackingRequest:
        """Return the adapter request for this shipment on ``route``."""
        return TrackingRequest(
            number=self.tracking_number,
            carrier=self.carrier or "other",
            credentials=route.credentials,
            shipment_id=self.shipment_id,
        )


@dataclass(frozen=True)
class NotPolled:
    """Why a claimed shipment was not polled, for ``bcctrack track``.

    ``paused`` names the credential (adapter, label) when the shipment waits
    for a paused credential, so that the command can print how to resume it.
    """

    reason: str
    paused: tuple[str, str] | None = None


@dataclass
class RoundResult:
    """What one round did, for logs and tests."""

    claimed: int = 0
    polled: int = 0
    deferred: int = 0
    failed: int = 0
    expired: int = 0
    stopped: int = 0
    notifications: int = 0
    # The pending updates the round queued, held until the round groups them.
    notification_ids: list[int] = field(default_factory=list)
    # Shipment id to why it was not polled, for shipments that could be.
    not_polled: dict[int, NotPolled] = field(default_factory=dict)


@dataclass(frozen=True)
class _Blocked:
    """A time before which a credential must not be called, with the reason."""

    until: datetime
    reason: str
    paused: bool = False


_Outcome: TypeAlias = Literal["ok", "split"] | _Blocked


class Poller:
    """Polls carrier adapters for the shipments in one store."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        registry: CarrierRegistry,
        on_notification: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.registry = registry
        # Called after a round queued customer updates, to wake the notifier.
        self.on_notification = on_notification
        self.owner = new_owner("poller")
        self.lease = timedelta(seconds=settings.lease_seconds)
        self.max_event_age = timedelta(hours=settings.max_event_age_hours)
        self.expire_after = timedelta(days=settings.expire_after_days)
        # The longest a round waits for one call slot; a slot further away
        # hands the shipments back instead of holding their leases.
        self.max_wait = min(self.lease / 4, timedelta(seconds=60))
        self._stop: asyncio.Event | None = None
        self._in_flight = 0

    # --- one round -----------------------------------------------------------

    async def poll_round(self) -> RoundResult:
        """Claim the due polls, ask the carriers, and record the results."""
        ids = await self._claim(self.settings.poll_batch_size)
        return await self.poll_claimed(ids)

    async def _claim(self, limit: int) -> list[int]:
        first_delay = timedelta(minutes=self.settings.poll_first_delay_minutes)
        await asyncio.to_thread(adopt_new_shipments, self.engine, first_delay)
        return await asyncio.to_thread(
            claim,
            self.engine,
            ShipmentPoll,
            PollState.ACTIVE,
            self.owner,
            self.lease,
            limit,
        )

    async def poll_claimed(self, poll_ids: Sequence[int]) -> RoundResult:
        """Poll the shipments of polls this poller has claimed."""
        result = RoundResult(claimed=len(poll_ids))
        if not poll_ids:
            return result
        started = time.monotonic()
        jobs = await asyncio.to_thread(self._load, list(poll_ids))
        groups: dict[tuple[str, str], tuple[Route, list[PollJob]]] = {}
        for job in jobs:
            if job.shop_removed:
                # The shop was removed after the poll was claimed.
                reason = f"shop {job.shop_slug!r} is removed"
                await asyncio.to_thread(self._stop_poll, job, reason)
                result.stopped += 1
                result.not_polled[job.shipment_id] = NotPolled(reason)
                continue
            if job.status in TERMINAL:
                await asyncio.to_thread(self._stop_poll, job, "shipment is final")
                result.stopped += 1
                continue
            route = self.registry.route(job.carrier, job.shop_credentials)
            if route is None:
                await self._no_route(job, result)
                continue
            key = (route.adapter.name, _label(route))
            groups.setdefault(key, (route, []))[1].append(job)
        await asyncio.gather(
            *(
                self._poll_route(route, group, result, started)
                for route, group in groups.values()
            )
        )
        if result.notification_ids:
            await asyncio.to_thread(self._group, result.notification_ids)
        if result.notifications and self.on_notification is not None:
            self.on_notification()
        return result

    def _group(self, notification_ids: list[int]) -> None:
        # The round's updates wait (queued with hold_until) so that those of
        # several parcels of one order go out as one email. When this fails,
        # each one goes out on its own once its hold ends.
        try:
            with transaction(self.engine) as session:
                group_updates(session, notification_ids)
        except Exception:
            log.exception(
                "grouping the updates %s failed; they go out one by one",
                notification_ids,
            )

    def _load(self, poll_ids: list[int]) -> list[PollJob]:
        with transaction(self.engine) as session:
            rows = list(
                session.execute(
                    select(ShipmentPoll, Shipment, Shop)
                    .join(Shipment, col(Shipment.id) == ShipmentPoll.shipment_id)
                    .join(Shop, col(Shop.id) == Shipment.shop_id)
                    .where(col(ShipmentPoll.id).in_(poll_ids))
                    .order_by(col(ShipmentPoll.id))
                )
            )
            slugs = {shop.id: shop.slug for _, _, shop in rows}
            credentials: dict[int, dict[str, Credentials]] = {}
            for stored in session.scalars(
                select(CarrierCredential).where(
                    col(CarrierCredential.shop_id).in_(list(slugs))
                )
            ):
                credentials.setdefault(stored.shop_id, {})[stored.adapter] = (
                    _shop_credentials(stored, slugs[stored.shop_id])
                )
        jobs = []
        for poll, shipment, shop in rows:
            assert poll.id is not None and shipment.id is not None
            jobs.append(
                PollJob(
                    poll_id=poll.id,
                    shipment_id=shipment.id,
                    tracking_number=shipment.tracking_number,
                    carrier=shipment.carrier,
                    status=ShipmentStatus(shipment.status),
                    last_news_at=poll.last_news_at,
                    attempts=poll.attempts,
                    shop_credentials=credentials.get(shop.id or 0, {}),
                    shop_slug=shop.slug,
                    shop_removed=shop.removed_at is not None,
                )
            )
        return jobs

    async def _no_route(self, job: PollJob, result: RoundResult) -> None:
        # Without an adapter the shipment still expires after the same time
        # without news; emails and status files may still move it.
        if await asyncio.to_thread(self._expire_if_stale, job):
            result.expired += 1
            return
        delay = jittered(poll_interval(job.status, self.settings) or timedelta(0))
        reason = f"no carrier adapter with credentials for {job.carrier or 'other'}"
        log.info(
            "shipment %s: %s; next look at %s",
            job.shipment_id,
            reason,
            _when(utcnow() + delay),
        )
        await asyncio.to_thread(
            self._release,
            job,
            next_attempt_at=utcnow() + delay,
            attempts=0,
            last_error=reason,
        )
        result.deferred += 1
        result.not_polled[job.shipment_id] = NotPolled(reason)

    # --- one route -----------------------------------------------------------

    async def _poll_route(
        self,
        route: Route,
        jobs: list[PollJob],
        result: RoundResult,
        started: float,
    ) -> None:
        adapter = route.adapter
        label = _label(route)
        batches = [
            jobs[i : i + adapter.max_batch]
            for i in range(0, len(jobs), adapter.max_batch)
        ]
        batches = await self._hand_back_late(route, batches, result)
        while batches:
            batch = batches.pop(0)
            if self._stopping():
                await self._defer(
                    route, [batch, *batches], _Blocked(utcnow(), STOP), result
                )
                return
            if time.monotonic() - started > self.lease.total_seconds() / 2:
                # Half the lease is gone: hand the rest back, due now, so
                # that no lease runs out while its shipment waits here.
                late = _Blocked(utcnow(), "the round took too long")
                await self._defer(route, [batch, *batches], late, result)
                return
            reservation = await asyncio.to_thread(
                carrier_accounts.reserve_call,
                self.engine,
                adapter.name,
                label,
                adapter.min_interval,
                self._daily_quota(adapter),
                self.max_wait,
            )
            if reservation.at is None:
                assert reservation.blocked_until is not None
                reason = reservation.reason or "no call slot"
                log.info(
                    "shipment %s: %s credential %r not used until %s: %s",
                    batch[0].shipment_id,
                    adapter.name,
                    label,
                    _when(reservation.blocked_until),
                    reason,
                )
                blocked = _Blocked(
                    reservation.blocked_until, reason, reservation.paused
                )
                await self._defer(route, [batch, *batches], blocked, result)
                return
            wait = (reservation.at - utcnow()).total_seconds()
            if wait > 0 and not await self._sleep(wait):
                await self._defer(
                    route, [batch, *batches], _Blocked(utcnow(), STOP), result
                )
                return
            outcome = await self._call(route, batch, result)
            if outcome == "split":
                batches[:0] = [[job] for job in batch]
            elif isinstance(outcome, _Blocked):
                # The credential or the carrier is out for a while: the
                # rest of the route waits as long.
                await self._defer(route, batches, outcome, result)
                return

    async def _hand_back_late(
        self, route: Route, batches: list[list[PollJob]], result: RoundResult
    ) -> list[list[PollJob]]:
        """Return the batches whose call can go out within ``max_wait``.

        The others go back to the queue, due at their estimated call slot,
        so that the round neither holds their leases nor waits for them.
        The first batch always stays; its reservation logs why it waits.
        """
        adapter = route.adapter
        slots = await asyncio.to_thread(
            carrier_accounts.estimate_slots,
            self.engine,
            adapter.name,
            _label(route),
            adapter.min_interval,
            self._daily_quota(adapter),
            len(batches),
        )
        horizon = utcnow() + self.max_wait
        keep = max(1, sum(1 for at, _ in slots if at <= horizon))
        if keep < len(batches):
            log.info(
                "shipment %s: %d batch(es) for %s credential %r handed back "
                "until their call slots, the first at %s",
                batches[keep][0].shipment_id,
                len(batches) - keep,
                adapter.name,
                _label(route),
                _when(slots[keep][0]),
            )
        for batch, (at, reason) in zip(batches[keep:], slots[keep:], strict=True):
            await self._defer(route, [batch], _Blocked(at, reason), result)
        return batches[:keep]

    def _daily_quota(self, adapter: CarrierAdapter) -> int:
        return carrier_accounts.daily_quota(adapter.name, self.settings)

    async def _call(
        self, route: Route, batch: list[PollJob], result: RoundResult
    ) -> _Outcome:
        """Send one batch and record its results.

        Returns "ok", "split" when the batch must be retried one number at a
        time, or a ``_Blocked`` when the route must not be called for a while.
        """
        adapter = route.adapter
        first = batch[0].shipment_id
        try:
            results = await adapter.track([job.request(route) for job in batch])
        except CarrierAuthError as error:
            return await self._pause(route, batch, error, result)
        except CarrierRateLimited as error:
            return await self._rate_limited(route, batch, error, result)
        except CarrierResponseError as error:
            if len(batch) > 1:
                # One bad number can make a carrier reject a whole batch
                # (FedEx answers 400), so the numbers are retried one by one.
                log.warning(
                    "shipment %s: %s rejected a batch of %d, retrying one by one: %s",
                    first,
                    adapter.name,
                    len(batch),
                    error,
                )
                return "split"
            return await self._failed(route, batch, error, result)
        except CarrierError as error:
            return await self._failed(route, batch, error, result)
        except Exception as error:
            # A bug in an adapter must not stop the poller or lose the batch.
            log.exception("shipment %s: %s raised unexpectedly", first, adapter.name)
            return await self._failed(route, batch, error, result)
        await asyncio.to_thread(
            carrier_accounts.record_success, self.engine, adapter.name, _label(route)
        )
        for job, tracking in zip(batch, results, strict=True):
            await self._apply(job, tracking, adapter.name, result)
        return "ok"

    async def _pause(
        self,
        route: Route,
        batch: list[PollJob],
        error: CarrierAuthError,
        result: RoundResult,
    ) -> _Blocked:
        adapter = route.adapter
        until = utcnow() + timedelta(minutes=self.settings.credential_pause_minutes)
        await asyncio.to_thread(
            carrier_accounts.pause,
            self.engine,
            adapter.name,
            error.credential,
            until,
            str(error),
            key_fingerprint(route.credentials or _configured(route)),
        )
        log.error(
            "shipment %s: %s credential %r rejected, paused until %s: %s",
            batch[0].shipment_id,
            adapter.name,
            error.credential,
            _when(until),
            error,
        )
        blocked = _Blocked(until, f"paused after a rejection: {error}", paused=True)
        await self._defer(route, [batch], blocked, result)
        return blocked

    async def _rate_limited(
        self,
        route: Route,
        batch: list[PollJob],
        error: CarrierRateLimited,
        result: RoundResult,
    ) -> _Blocked:
        adapter = route.adapter
        until = await asyncio.to_thread(
            carrier_accounts.record_error,
            self.engine,
            adapter.name,
            _label(route),
            self.settings.poll_retry_delay,
            error.retry_after,
        )
        assert until is not None
        log.warning(
            "shipment %s: %s rate limit hit (Retry-After %s), next call at %s",
            batch[0].shipment_id,
            adapter.name,
            "none" if error.retry_after is None else f"{error.retry_after:g} s",
            _when(until),
        )
        blocked = _Blocked(until, f"rate limited by the carrier: {error}")
        await self._defer(route, [batch], blocked, result)
        return blocked

    async def _failed(
        self,
        route: Route,
        batch: list[PollJob],
        error: Exception,
        result: RoundResult,
    ) -> _Outcome:
        """Back off the batch's shipments, and the credential after a streak.

        While the credential's errors in a row stay within
        ``TOLERATED_ERRORS``, a batch of several numbers is split to find
        the one that fails, and the other shipments go on.
        """
        adapter = route.adapter
        reason = f"{type(error).__name__}: {error}"[:_MAX_ERROR]
        until = await asyncio.to_thread(
            carrier_accounts.record_error,
            self.engine,
            adapter.name,
            _label(route),
            self.settings.poll_retry_delay,
            None,
            TOLERATED_ERRORS,
        )
        if until is None and len(batch) > 1:
            log.warning(
                "shipment %s: %s failed for a batch of %d, retrying one by one: %s",
                batch[0].shipment_id,
                adapter.name,
                len(batch),
                reason,
            )
            return "split"
        for job in batch:
            delay = retry_delay(job.attempts, self.settings.poll_retry_delay)
            log.warning(
                "shipment %s: poll attempt %d failed, retrying at %s: %s",
                job.shipment_id,
                job.attempts,
                _when(utcnow() + delay),
                reason,
            )
            await asyncio.to_thread(
                self._release,
                job,
                next_attempt_at=utcnow() + delay,
                last_error=reason,
            )
            result.not_polled[job.shipment_id] = NotPolled(reason)
        result.failed += len(batch)
        if until is None:
            return "ok"
        log.warning(
            "shipment %s: %s credential %r backs off until %s after more than "
            "%d failed calls in a row",
            batch[0].shipment_id,
            adapter.name,
            _label(route),
            _when(until),
            TOLERATED_ERRORS,
        )
        return _Blocked(until, f"backing off after failed calls: {reason}")

    async def _defer(
        self,
        route: Route,
        batches: list[list[PollJob]],
        blocked: _Blocked,
        result: RoundResult | None = None,
    ) -> None:
        """Hand shipments back until ``blocked.until``, marked as waiting.

        Not the shipment's fault: the claim's attempt does not count. The
        marked ``last_error`` lets resuming the credential find them.
        """
        adapter, label = route.adapter.name, _label(route)
        reason = waiting_reason(adapter, label, blocked.until, blocked.reason)
        note = NotPolled(
            reason[:_MAX_ERROR], (adapter, label) if blocked.paused else None
        )
        for batch in batches:
            for job in batch:
                await asyncio.to_thread(
                    self._release,
                    job,
                    next_attempt_at=blocked.until + jittered(timedelta(seconds=10)),
                    attempts=max(0, job.attempts - 1),
                    last_error=note.reason,
                )
                if result is not None:
                    result.deferred += 1
                    result.not_polled[job.shipment_id] = note

    # --- recording a result --------------------------------------------------

    async def _apply(
        self,
        job: PollJob,
        tracking: TrackingResult,
        adapter: str,
        result: RoundResult,
    ) -> None:
        try:
            created = await asyncio.to_thread(self._record, job, tracking, adapter)
        except LeaseLostError:
            log.warning("shipment %s: lease lost, result dropped", job.shipment_id)
            reason = "another process took the poll over; its result was dropped"
            result.not_polled[job.shipment_id] = NotPolled(reason)
            return
        except Exception as error:
            log.exception("shipment %s: recording the poll failed", job.shipment_id)
            delay = retry_delay(job.attempts, self.settings.poll_retry_delay)
            reason = f"{type(error).__name__}: {error}"[:_MAX_ERROR]
            await asyncio.to_thread(
                self._release, job, next_attempt_at=utcnow() + delay, last_error=reason
            )
            result.failed += 1
            result.not_polled[job.shipment_id] = NotPolled(reason)
            return
        result.polled += 1
        result.notifications += len(created)
        result.notification_ids.extend(created)
        if tracking.error:
            log.warning(
                "shipment %s: %s rejected the number: %s",
                job.shipment_id,
                adapter,
                tracking.error,
            )

    def _record(
        self, job: PollJob, tracking: TrackingResult, adapter: str
    ) -> list[int]:
        now = utcnow()
        with transaction(self.engine) as session:
            # Lock the poll row and check the lease before writing anything.
            poll = session.scalars(
                select(ShipmentPoll)
                .where(
                    col(ShipmentPoll.id) == job.poll_id,
                    col(ShipmentPoll.lease_owner) == self.owner,
                )
                .with_for_update()
            ).first()
            if poll is None:
                raise LeaseLostError(str(job.poll_id))
            shipment = session.get(Shipment, job.shipment_id)
            assert shipment is not None
            order = session.get(Order, shipment.order_id)
            assert order is not None
            before = shipment.status
            stored_before = _event_count(session, job.shipment_id)
            events = [event.to_status_event(adapter) for event in tracking.events]
            current = ShipmentStatus(shipment.status)
            if tracking.found and not events and is_progress(current, tracking.status):
                # A current status without events (some carriers send only
                # that) is stored as an event of the poll time.
                events.append(
                    StatusEvent(
                        status=tracking.status,
                        occurred_at=now,
                        source=adapter,
                        raw_code=tracking.raw_code,
                        raw_text=tracking.raw_text,
                    )
                )
            created: list[Notification] = []
            for event in events:
                notification = record_status(
                    session,
                    shipment,
                    order,
                    event,
                    self.max_event_age,
                    hold_until=now + self.lease,
                )
                if notification is not None:
                    created.append(notification)
            pending = _supersede(created)
            if tracking.estimated_delivery is not None:
                shipment.estimated_delivery = tracking.estimated_delivery
                session.add(shipment)
            news = _event_count(session, job.shipment_id) > stored_before
            # record_status may have written the poll row; read it again.
            session.refresh(poll)
            if news:
                poll.last_news_at = now
            self._schedule(session, poll, shipment, tracking, adapter, now)
        if shipment.status != before:
            log.info(
                "shipment %s: polled %s, %s -> %s, %d update(s) queued",
                job.shipment_id,
                adapter,
                before,
                shipment.status,
                len(pending),
            )
        else:
            log.debug(
                "shipment %s: polled %s, still %s%s",
                job.shipment_id,
                adapter,
                shipment.status,
                " (news)" if news else "",
            )
        return pending

    def _schedule(
        self,
        session: Any,
        poll: ShipmentPoll,
        shipment: Shipment,
        tracking: TrackingResult,
        adapter: str,
        now: datetime,
    ) -> None:
        status = ShipmentStatus(shipment.status)
        interval = poll_interval(status, self.settings)
        last_news = poll.last_news_at
        if interval is not None and now - last_news > self.expire_after:
            self._expire(session, shipment, now)
            interval = None
        poll.state = PollState.STOPPED if interval is None else PollState.ACTIVE
        poll.next_attempt_at = now + jittered(interval or timedelta(0))
        poll.attempts = 0
        poll.polls += 1
        poll.last_polled_at = now
        poll.adapter = adapter
        poll.last_error = tracking.error
        poll.lease_owner = None
        poll.lease_expires_at = None
        session.add(poll)
        if interval is not None:
            log.debug(
                "shipment %s: next poll at %s", shipment.id, _when(poll.next_attempt_at)
            )

    def _expire(self, session: Any, shipment: Shipment, now: datetime) -> None:
        order = session.get(Order, shipment.order_id)
        days = self.settings.expire_after_days
        event = StatusEvent(
            status=S.EXPIRED,
            occurred_at=now,
            source="poller",
            raw_text=f"no news for {days:g} days",
        )
        record_status(session, shipment, order, event, self.max_event_age)
        log.info("shipment %s: expired after %g days without news", shipment.id, days)

    def _expire_if_stale(self, job: PollJob) -> bool:
        now = utcnow()
        if now - job.last_news_at <= self.expire_after:
            return False
        with transaction(self.engine) as session:
            poll = session.get(ShipmentPoll, job.poll_id)
            shipment = session.get(Shipment, job.shipment_id)
            if poll is None or shipment is None or poll.lease_owner != self.owner:
                return False
            self._expire(session, shipment, now)
            poll.state = PollState.STOPPED
            poll.lease_owner = None
            poll.lease_expires_at = None
            session.add(poll)
        return True

    def _stop_poll(self, job: PollJob, reason: str) -> None:
        release(
            self.engine,
            ShipmentPoll,
            job.poll_id,
            self.owner,
            state=PollState.STOPPED,
            attempts=0,
            last_error=None,
        )
        log.debug("shipment %s: polling stopped: %s", job.shipment_id, reason)

    def _release(self, job: PollJob, **values: Any) -> None:
        if not release(self.engine, ShipmentPoll, job.poll_id, self.owner, **values):
            log.warning("shipment %s: lease lost before release", job.shipment_id)

    # --- running -------------------------------------------------------------

    async def run(self, stop: asyncio.Event, wake: asyncio.Event | None = None) -> None:
        """Poll until ``stop`` is set, resting ``poll_interval`` when idle.

        Rounds run side by side, up to ``poll_batch_size`` claimed polls in
        all, so that a round waiting for one carrier's call slot does not
        keep other carriers' due shipments waiting.
        """
        wake = wake or asyncio.Event()
        self._stop = stop
        try:
            await self.resume_changed_keys()
        except Exception:
            log.exception("checking the carrier keys for changes failed")
        rounds: set[asyncio.Task[RoundResult]] = set()
        while not stop.is_set():
            free = self.settings.poll_batch_size - self._in_flight
            claimed = 0
            if free > 0:
                try:
                    claimed = await self._start_round(free, rounds)
                except Exception:
                    log.exception("poll round failed")
            if free <= 0 or claimed < free:
                await wait_for_work(wake, stop, self.settings.poll_interval)
        await asyncio.gather(*rounds, return_exceptions=True)

    async def _start_round(
        self, limit: int, rounds: set[asyncio.Task[RoundResult]]
    ) -> int:
        ids = await self._claim(limit)
        if not ids:
            return 0
        self._in_flight += len(ids)
        task = asyncio.create_task(self.poll_claimed(ids))
        rounds.add(task)

        def finished(task: asyncio.Task[RoundResult]) -> None:
            rounds.discard(task)
            self._in_flight -= len(ids)
            if not task.cancelled() and task.exception() is not None:
                # The polls stay leased and are claimed again after the lease.
                log.error("poll round failed", exc_info=task.exception())

        task.add_done_callback(finished)
        return len(ids)

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; return False when the poller is stopped first."""
        if self._stop is None:
            await asyncio.sleep(seconds)
            return True
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            return True
        return False

    async def resume_changed_keys(self) -> list[Resumed]:
        """Resume each paused credential whose key changed since its rejection.

        The configured keys and the shops' stored keys are compared with the
        fingerprint stored with each pause. ``run`` calls this first, so a key
        fixed in the settings takes effect when the poller starts.
        """
        fingerprints = await asyncio.to_thread(self._key_fingerprints)
        return await asyncio.to_thread(
            carrier_accounts.resume_changed_keys, self.engine, fingerprints
        )

    def _key_fingerprints(self) -> dict[tuple[str, str], str]:
        found = {}
        for adapter in self.registry.adapters:
            if adapter.has_credentials():
                configured = _configured_of(adapter)
                found[(adapter.name, configured.label)] = key_fingerprint(configured)
        with transaction(self.engine) as session:
            rows = session.execute(
                select(CarrierCredential, col(Shop.slug)).join(
                    Shop, col(Shop.id) == CarrierCredential.shop_id
                )
            )
            for stored, slug in rows:
                credentials = _shop_credentials(stored, slug)
                found[(stored.adapter, slug)] = key_fingerprint(credentials)
        return found


def _event_count(session: Any, shipment_id: int) -> int:
    count: int = session.scalar(
        select(func.count())
        .select_from(TrackingEvent)
        .where(col(TrackingEvent.shipment_id) == shipment_id)
    )
    return count


def _configured_of(adapter: CarrierAdapter) -> Credentials:
    credentials: Credentials = getattr(adapter, "credentials", Credentials())
    return credentials


def _configured(route: Route) -> Credentials:
    return _configured_of(route.adapter)


def _label(route: Route) -> str:
    """Return the label of the credential a route uses."""
    return (route.credentials or _configured(route)).label


def _shop_credentials(stored: CarrierCredential, slug: str) -> Credentials:
    # The shop's slug labels its credential in logs and pauses.
    return Credentials(
        label=slug,
        api_key=stored.api_key,
        client_id=stored.client_id,
        client_secret=stored.client_secret,
    )


def _supersede(created: list[Notification]) -> list[int]:
    """Suppress all but the newest pending update of one poll; return its id.

    A poll that brings several changes at once (the first poll of a parcel
    that is already out for delivery) sends only the newest update; the
    earlier ones are past news.
    """
    pending = [n for n in created if n.state == NotificationState.PENDING]
    for older in pending[:-1]:
        older.state = NotificationState.SUPPRESSED
        older.reason = SUPERSEDED
        log.info("notification %s: %s %s", older.id, older.update, SUPERSEDED)
    return [pending[-1].id] if pending and pending[-1].id is not None else []


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


async def poll_shipment(poller: Poller, shipment_id: int) -> RoundResult:
    """Poll one shipment now, whatever its schedule (``bcctrack track``).

    Raises PollLeasedError while another process holds the shipment's poll.
    """
    poll_id = await asyncio.to_thread(make_due, poller.engine, shipment_id)
    ids = await asyncio.to_thread(
        claim,
        poller.engine,
        ShipmentPoll,
        PollState.ACTIVE,
        poller.owner,
        poller.lease,
        1,
        poll_id,
    )
    return await poller.poll_claimed(ids)

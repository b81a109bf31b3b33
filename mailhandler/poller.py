"""The poller: asks the carriers about due shipments and records their news.

Each round claims due ``shipment_poll`` rows with a lease, groups their
shipments by route (adapter and credential), and sends each group's numbers
in batches of the adapter's ``max_batch``. Every call is reserved first in
the credential's shared budget (``carrier_accounts``), so several pollers
together keep the carrier's interval, daily quota and ``Retry-After``. New
events go through ``record_status``, which moves the shipment and queues
the customer updates. A failed call never loses a shipment: its poll is
released with a later ``next_attempt_at`` and is claimed again then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from sqlmodel import col

from mailhandler import carrier_accounts
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
from mailhandler.triggers import StatusEvent, is_progress, record_status

log = logging.getLogger("bcctrack.poller")

S = ShipmentStatus
_MAX_ERROR = 2000
SUPERSEDED = "superseded by a later update from the same poll"


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

    def request(self, route: Route) -> TrackingRequest:
        """Return the adapter request for this shipment on ``route``."""
        return TrackingRequest(
            number=self.tracking_number,
            carrier=self.carrier or "other",
            credentials=route.credentials,
            shipment_id=self.shipment_id,
        )


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

    # --- one round -----------------------------------------------------------

    async def poll_round(self) -> RoundResult:
        """Claim the due polls, ask the carriers, and record the results."""
        first_delay = timedelta(minutes=self.settings.poll_first_delay_minutes)
        await asyncio.to_thread(adopt_new_shipments, self.engine, first_delay)
        ids = await asyncio.to_thread(
            claim,
            self.engine,
            ShipmentPoll,
            PollState.ACTIVE,
            self.owner,
            self.lease,
            self.settings.poll_batch_size,
        )
        return await self.poll_claimed(ids)

    async def poll_claimed(self, poll_ids: Sequence[int]) -> RoundResult:
        """Poll the shipments of polls this poller has claimed."""
        result = RoundResult(claimed=len(poll_ids))
        if not poll_ids:
            return result
        started = time.monotonic()
        jobs = await asyncio.to_thread(self._load, list(poll_ids))
        groups: dict[tuple[str, str], tuple[Route, list[PollJob]]] = {}
        for job in jobs:
            if job.status in TERMINAL:
                await asyncio.to_thread(self._stop, job, "shipment is final")
                result.stopped += 1
                continue
            route = self.registry.route(job.carrier, job.shop_credentials)
            if route is None:
                await self._no_route(job, result)
                continue
            label = (route.credentials or _configured(route)).label
            key = (route.adapter.name, label)
            groups.setdefault(key, (route, []))[1].append(job)
        await asyncio.gather(
            *(
                self._poll_route(route, group, result, started)
                for route, group in groups.values()
            )
        )
        if result.notifications and self.on_notification is not None:
            self.on_notification()
        return result

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
                # The shop's slug labels its credential in logs and pauses.
                credentials.setdefault(stored.shop_id, {})[stored.adapter] = (
                    Credentials(
                        label=slugs[stored.shop_id],
                        api_key=stored.api_key,
                        client_id=stored.client_id,
                        client_secret=stored.client_secret,
                    )
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

    # --- one route -----------------------------------------------------------

    async def _poll_route(
        self,
        route: Route,
        jobs: list[PollJob],
        result: RoundResult,
        started: float,
    ) -> None:
        adapter = route.adapter
        label = (route.credentials or _configured(route)).label
        batches = [
            jobs[i : i + adapter.max_batch]
            for i in range(0, len(jobs), adapter.max_batch)
        ]
        while batches:
            batch = batches.pop(0)
            if time.monotonic() - started > self.lease.total_seconds() / 2:
                # Half the lease is gone: hand the rest back, due now, so
                # that no lease runs out while its shipment waits here.
                await self._defer([batch, *batches], utcnow(), "round took too long")
                result.deferred += sum(len(b) for b in [batch, *batches])
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
                log.info(
                    "shipment %s: %s credential %r not used until %s: %s",
                    batch[0].shipment_id,
                    adapter.name,
                    label,
                    _when(reservation.blocked_until),
                    reservation.reason,
                )
                rest = [batch, *batches]
                await self._defer(rest, reservation.blocked_until, reservation.reason)
                result.deferred += sum(len(b) for b in rest)
                return
            wait = (reservation.at - utcnow()).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
            outcome = await self._call(route, batch, result)
            if outcome == "split":
                batches[:0] = [[job] for job in batch]
            elif isinstance(outcome, datetime):
                # The credential or the carrier is out for a while: the
                # rest of the route waits as long.
                await self._defer(batches, outcome, "an earlier call failed")
                result.deferred += sum(len(b) for b in batches)
                return

    def _daily_quota(self, adapter: CarrierAdapter) -> int:
        if adapter.name == "dhl":
            return self.settings.dhl_daily_quota
        return 0

    async def _call(
        self, route: Route, batch: list[PollJob], result: RoundResult
    ) -> str | datetime:
        """Send one batch and record its results.

        Returns "ok", "split" when the batch must be retried one number at a
        time, or the time before which the route must not be called again.
        """
        adapter = route.adapter
        label = (route.credentials or _configured(route)).label
        first = batch[0].shipment_id
        try:
            results = await adapter.track([job.request(route) for job in batch])
        except CarrierAuthError as error:
            until = utcnow() + timedelta(minutes=self.settings.credential_pause_minutes)
            await asyncio.to_thread(
                carrier_accounts.pause,
                self.engine,
                adapter.name,
                error.credential,
                until,
                str(error),
            )
            log.error(
                "shipment %s: %s credential %r rejected, paused until %s: %s",
                first,
                adapter.name,
                error.credential,
                _when(until),
                error,
            )
            await self._defer([batch], until, str(error))
            result.deferred += len(batch)
            return until
        except CarrierRateLimited as error:
            until = await asyncio.to_thread(
                carrier_accounts.record_error,
                self.engine,
                adapter.name,
                label,
                self.settings.poll_retry_delay,
                error.retry_after,
            )
            log.warning(
                "shipment %s: %s rate limit hit (Retry-After %s), next call at %s",
                first,
                adapter.name,
                "none" if error.retry_after is None else f"{error.retry_after:g} s",
                _when(until),
            )
            await self._defer([batch], until, str(error))
            result.deferred += len(batch)
            return until
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
            await self._failed(route, batch, error, result)
            return "ok"
        except CarrierError as error:
            return await self._failed(route, batch, error, result)
        except Exception as error:
            # A bug in an adapter must not stop the poller or lose the batch.
            log.exception("shipment %s: %s raised unexpectedly", first, adapter.name)
            return await self._failed(route, batch, error, result)
        await asyncio.to_thread(
            carrier_accounts.record_success, self.engine, adapter.name, label
        )
        for job, tracking in zip(batch, results, strict=True):
            await self._apply(job, tracking, adapter.name, result)
        return "ok"

    async def _failed(
        self,
        route: Route,
        batch: list[PollJob],
        error: Exception,
        result: RoundResult,
    ) -> datetime:
        adapter = route.adapter
        label = (route.credentials or _configured(route)).label
        until = await asyncio.to_thread(
            carrier_accounts.record_error,
            self.engine,
            adapter.name,
            label,
            self.settings.poll_retry_delay,
        )
        reason = f"{type(error).__name__}: {error}"[:_MAX_ERROR]
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
        result.failed += len(batch)
        return until

    async def _defer(
        self, batches: list[list[PollJob]], until: datetime, reason: str | None
    ) -> None:
        # Not the shipment's fault: the claim's attempt does not count.
        for batch in batches:
            for job in batch:
                await asyncio.to_thread(
                    self._release,
                    job,
                    next_attempt_at=until + jittered(timedelta(seconds=10)),
                    attempts=max(0, job.attempts - 1),
                    last_error=reason,
                )

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
            return
        except Exception as error:
            log.exception("shipment %s: recording the poll failed", job.shipment_id)
            delay = retry_delay(job.attempts, self.settings.poll_retry_delay)
            await asyncio.to_thread(
                self._release,
                job,
                next_attempt_at=utcnow() + delay,
                last_error=f"{type(error).__name__}: {error}"[:_MAX_ERROR],
            )
            result.failed += 1
            return
        result.polled += 1
        result.notifications += created
        if tracking.error:
            log.warning(
                "shipment %s: %s rejected the number: %s",
                job.shipment_id,
                adapter,
                tracking.error,
            )

    def _record(self, job: PollJob, tracking: TrackingResult, adapter: str) -> int:
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
                    session, shipment, order, event, self.max_event_age
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
                pending,
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

    def _stop(self, job: PollJob, reason: str) -> None:
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
        """Poll until ``stop`` is set, resting ``poll_interval`` when idle."""
        wake = wake or asyncio.Event()
        while not stop.is_set():
            try:
                done = await self.poll_round()
            except Exception:
                log.exception("poll round failed")
                done = RoundResult()
            if done.claimed < self.settings.poll_batch_size:
                await wait_for_work(wake, stop, self.settings.poll_interval)


def _event_count(session: Any, shipment_id: int) -> int:
    count: int = session.scalar(
        select(func.count())
        .select_from(TrackingEvent)
        .where(col(TrackingEvent.shipment_id) == shipment_id)
    )
    return count


def _configured(route: Route) -> Credentials:
    adapter: Any = route.adapter
    credentials: Credentials = getattr(adapter, "credentials", Credentials())
    return credentials


def _supersede(created: list[Notification]) -> int:
    """Suppress all but the newest pending update of one poll; return pending.

    A poll that brings several changes at once (the first poll of a parcel
    that is already out for delivery) sends only the newest update; the
    earlier ones are past news.
    """
    pending = [n for n in created if n.state == NotificationState.PENDING]
    for older in pending[:-1]:
        older.state = NotificationState.SUPPRESSED
        older.reason = SUPERSEDED
        log.info("notification %s: %s %s", older.id, older.update, SUPERSEDED)
    return 1 if pending else 0


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


async def poll_shipment(poller: Poller, shipment_id: int) -> RoundResult:
    """Poll one shipment now, whatever its schedule (``bcctrack track``)."""
    poll_id = await asyncio.to_thread(make_due, poller.engine, shipment_id)
    if poll_id is None:
        raise LookupError(
            f"shipment {shipment_id} is being polled by another process right now"
        )
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

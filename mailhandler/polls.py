"""The poller's schedule: which shipment to ask the carrier about, and when.

Each shipment the poller follows has one ``shipment_poll`` row, claimed with
a lease like the other queues. The poller adds the rows itself for shipments
it has not seen yet, so that no code that creates shipments has to know
about polling. A row stops (``state`` ``stopped``) when its shipment is
delivered, returned or expired, and starts again if news revives an expired
shipment.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from mailhandler.settings import Settings
from mailhandler.store import transaction
from mailhandler.store.engine import is_postgresql
from mailhandler.store.models import (
    PollState,
    Shipment,
    ShipmentPoll,
    ShipmentStatus,
    utcnow,
)

S = ShipmentStatus

TERMINAL = frozenset({S.DELIVERED, S.RETURNED, S.EXPIRED})

# Schedules are spread by this fraction either way, so that shipments
# created together do not reach the carrier together.
JITTER = 0.15

# Shipments adopted per call, so that a large backlog is taken in steps.
_ADOPT_LIMIT = 1000


def poll_interval(status: ShipmentStatus, settings: Settings) -> timedelta | None:
    """Return the time between two polls in ``status``; None stops polling."""
    hours = {
        S.PENDING: settings.poll_pending_hours,
        S.UNKNOWN: settings.poll_pending_hours,
        S.IN_TRANSIT: settings.poll_in_transit_hours,
        S.OUT_FOR_DELIVERY: settings.poll_out_for_delivery_hours,
        S.AVAILABLE_FOR_PICKUP: settings.poll_waiting_hours,
        S.DELIVERY_FAILED: settings.poll_waiting_hours,
        S.EXCEPTION: settings.poll_exception_hours,
    }.get(status)
    if hours is None:
        return None
    return timedelta(hours=hours)


def jittered(delay: timedelta) -> timedelta:
    """Return ``delay`` spread by +-15 %."""
    return delay * random.uniform(1 - JITTER, 1 + JITTER)


def adopt_new_shipments(engine: Engine, first_delay: timedelta) -> int:
    """Add a poll row for every shipment that has none; return how many.

    A new shipment's first poll is ``first_delay`` after its creation.
    Concurrent pollers may adopt the same shipment; the unique key on
    ``shipment_id`` keeps one row.
    """
    now = utcnow()
    known = select(col(ShipmentPoll.shipment_id))
    query = (
        select(col(Shipment.id), col(Shipment.created_at), col(Shipment.status))
        .where(col(Shipment.id).not_in(known), col(Shipment.withdrawn_at).is_(None))
        .order_by(col(Shipment.id))
        .limit(_ADOPT_LIMIT)
    )
    insert_ = postgresql.insert if is_postgresql(engine) else sqlite.insert
    with transaction(engine) as session:
        rows = list(session.execute(query))
        for shipment_id, created_at, status in rows:
            stopped = ShipmentStatus(status) in TERMINAL
            values = {
                "shipment_id": shipment_id,
                "state": PollState.STOPPED if stopped else PollState.ACTIVE,
                "attempts": 0,
                "next_attempt_at": max(now, created_at + first_delay),
                "polls": 0,
                "last_news_at": created_at,
            }
            session.execute(
                insert_(ShipmentPoll)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["shipment_id"])
            )
    return len(rows)


def note_status_change(
    session: Session, shipment_id: int, status: ShipmentStatus, at: datetime
) -> None:
    """Update the poll row of a shipment whose status just changed.

    A terminal status stops polling; any other change counts as news and
    makes a stopped shipment (an expired one that got news) due at once.
    """
    values: dict[str, object] = {"last_news_at": at}
    if status in TERMINAL:
        values["state"] = PollState.STOPPED
    else:
        stopped = session.scalars(
            select(ShipmentPoll).where(
                col(ShipmentPoll.shipment_id) == shipment_id,
                col(ShipmentPoll.state) == PollState.STOPPED,
            )
        ).first()
        if stopped is not None:
            values.update(state=PollState.ACTIVE, next_attempt_at=at, attempts=0)
    session.execute(
        update(ShipmentPoll)
        .where(col(ShipmentPoll.shipment_id) == shipment_id)
        .values(**values)
    )


class PollLeasedError(Exception):
    """Another process holds the lease of a shipment's poll right now."""

    def __init__(self, shipment_id: int, owner: str, until: datetime) -> None:
        super().__init__(
            f"shipment {shipment_id} is being polled by {owner} right now; "
            f"its lease ends at {until.isoformat(timespec='seconds')} at the "
            "latest, and the news it brings is stored"
        )
        self.shipment_id = shipment_id
        self.owner = owner
        self.until = until


def make_due(engine: Engine, shipment_id: int) -> int:
    """Make a shipment's poll due now, adopting it first; return the poll id.

    Raises PollLeasedError while another process holds the poll's lease, and
    LookupError when the shipment does not exist.
    """
    now = utcnow()
    adopt_new_shipments(engine, timedelta(0))
    with transaction(engine) as session:
        poll = session.scalars(
            select(ShipmentPoll)
            .where(col(ShipmentPoll.shipment_id) == shipment_id)
            .with_for_update()
        ).first()
        if poll is None or poll.id is None:
            raise LookupError(f"shipment {shipment_id} not found")
        if poll.lease_expires_at is not None and poll.lease_expires_at > now:
            owner = poll.lease_owner or "another process"
            raise PollLeasedError(shipment_id, owner, poll.lease_expires_at)
        poll.state = PollState.ACTIVE
        poll.next_attempt_at = now
        session.add(poll)
        return poll.id

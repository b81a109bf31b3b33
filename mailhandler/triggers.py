"""Status changes of shipments, and the customer updates they trigger.

Every source of status (shop emails, carrier emails, carrier APIs, status
files) goes through ``record_status`` so that the rules for moving a shipment
and for notifying its customer live in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from mailhandler.optout import REASON as OPTED_OUT
from mailhandler.optout import is_opted_out
from mailhandler.polls import note_status_change
from mailhandler.store.models import (
    Notification,
    NotificationState,
    Order,
    OrderState,
    Shipment,
    ShipmentStatus,
    TrackingEvent,
    UpdateType,
    utcnow,
)

log = logging.getLogger("bcctrack.pipeline")

S = ShipmentStatus

# Progress along the delivery. A move to a lower rank is a re-sort or a late
# event, so it is ignored, except a move into one of the problem statuses.
_RANK = {
    S.PENDING: 0,
    S.UNKNOWN: 0,
    S.IN_TRANSIT: 1,
    S.EXCEPTION: 1,
    S.DELIVERY_FAILED: 1,
    S.OUT_FOR_DELIVERY: 2,
    S.AVAILABLE_FOR_PICKUP: 2,
    S.DELIVERED: 3,
    S.RETURNED: 3,
    S.EXPIRED: 3,
}
_FINAL = {S.DELIVERED, S.RETURNED}
_PROBLEMS = {S.EXCEPTION, S.DELIVERY_FAILED, S.RETURNED}

UPDATE_FOR_STATUS: dict[ShipmentStatus, UpdateType] = {
    S.IN_TRANSIT: UpdateType.SHIPPED,
    S.OUT_FOR_DELIVERY: UpdateType.OUT_FOR_DELIVERY,
    S.AVAILABLE_FOR_PICKUP: UpdateType.AVAILABLE_FOR_PICKUP,
    S.DELIVERED: UpdateType.DELIVERED,
    S.DELIVERY_FAILED: UpdateType.DELAYED,
    S.EXCEPTION: UpdateType.DELAYED,
    S.RETURNED: UpdateType.RETURNED,
}


@dataclass(frozen=True)
class StatusEvent:
    """A status for one shipment from any source, before it is stored."""

    status: ShipmentStatus
    occurred_at: datetime
    source: str
    raw_code: str | None = None
    raw_text: str | None = None
    location: str | None = None
    inbound_message_id: int | None = None


def is_progress(current: ShipmentStatus, new: ShipmentStatus) -> bool:
    """Tell whether moving from ``current`` to ``new`` is a real change."""
    if new == current or current in _FINAL:
        return False
    if current == S.EXPIRED or new in _PROBLEMS:
        return True
    if new == S.EXPIRED:
        return True
    return _RANK[new] >= _RANK[current] and new != S.UNKNOWN


def record_status(
    session: Session,
    shipment: Shipment,
    order: Order,
    event: StatusEvent,
    max_event_age: timedelta,
    hold_until: datetime | None = None,
) -> Notification | None:
    """Store ``event`` on ``shipment``, move its status, and queue an update.

    Returns the notification created for the change, or None when the event
    changed nothing or its update was already queued. An event stored
    before (same source, time, status and raw code) is not stored again, so
    a carrier's full history can be passed on every poll.
    """
    assert shipment.id is not None
    if _is_known(session, shipment.id, event):
        return None
    session.add(
        TrackingEvent(
            shipment_id=shipment.id,
            occurred_at=event.occurred_at,
            status=event.status,
            location=event.location,
            raw_code=event.raw_code,
            raw_text=event.raw_text,
            source=event.source,
            inbound_message_id=event.inbound_message_id,
        )
    )
    current = ShipmentStatus(shipment.status)
    if not is_progress(current, event.status):
        return None
    shipment.status = event.status
    shipment.status_changed_at = utcnow()
    session.add(shipment)
    note_status_change(session, shipment.id, event.status, shipment.status_changed_at)
    log.info(
        "shipment %s: %s -> %s (%s)", shipment.id, current, event.status, event.source
    )
    update = UPDATE_FOR_STATUS.get(event.status)
    if update is None:
        return None
    return queue_update(
        session, shipment, order, update, event.occurred_at, max_event_age, hold_until
    )


def _is_known(session: Session, shipment_id: int, event: StatusEvent) -> bool:
    query = select(col(TrackingEvent.id)).where(
        col(TrackingEvent.shipment_id) == shipment_id,
        col(TrackingEvent.source) == event.source,
        col(TrackingEvent.occurred_at) == event.occurred_at,
        col(TrackingEvent.status) == event.status,
    )
    if event.raw_code is None:
        query = query.where(col(TrackingEvent.raw_code).is_(None))
    else:
        query = query.where(col(TrackingEvent.raw_code) == event.raw_code)
    return session.scalars(query.limit(1)).first() is not None


def queue_update(
    session: Session,
    shipment: Shipment,
    order: Order,
    update: UpdateType,
    event_at: datetime,
    max_event_age: timedelta,
    hold_until: datetime | None = None,
) -> Notification | None:
    """Queue one ``update`` email for ``shipment``, at most once ever.

    The notification is stored as suppressed, with the reason, when it must
    not go out: the order is cancelled, the customer is unknown or the event
    is too old. With ``hold_until``, the notifier leaves it alone until then
    or until ``group_updates`` releases it.
    """
    assert shipment.id is not None and order.id is not None
    state = NotificationState.PENDING
    reason = None
    if order.state == OrderState.CANCELLED:
        state, reason = NotificationState.SUPPRESSED, "order cancelled"
    elif not order.customer_email:
        state, reason = NotificationState.SUPPRESSED, "no customer address"
    elif utcnow() - event_at > max_event_age:
        state, reason = NotificationState.SUPPRESSED, "event older than the maximum age"
    elif is_opted_out(session, order.shop_id, order.customer_email):
        state, reason = NotificationState.SUPPRESSED, OPTED_OUT
    values = {
        "shop_id": order.shop_id,
        "order_id": order.id,
        "shipment_id": shipment.id,
        "update": update,
        "recipient": order.customer_email or "",
        "state": state,
        "attempts": 0,
        "next_attempt_at": hold_until or utcnow(),
        "event_at": event_at,
        "reason": reason,
        "created_at": utcnow(),
    }
    bind = session.get_bind()
    insert_ = postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert_(Notification)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["shipment_id", "update"])
        .returning(col(Notification.id))
    )
    new_id = session.scalars(statement).first()
    if new_id is None:
        return None
    log.info(
        "notification %s: %s for shipment %s queued as %s%s",
        new_id,
        update,
        shipment.id,
        state,
        f" ({reason})" if reason else "",
    )
    return session.get(Notification, new_id)


def group_updates(session: Session, notification_ids: Sequence[int]) -> int:
    """Join the pending updates among ``notification_ids`` into emails.

    The updates of one order and update type become one group: the notifier
    claims and sends a group as one email that lists its parcels. Every
    update among them becomes due now, which releases the ones queued with
    ``hold_until``. An update that the notifier has claimed or tried to send
    stays out of any group. Returns the number of groups of two or more.
    """
    if not notification_ids:
        return 0
    now = utcnow()
    free = session.scalars(
        select(Notification)
        .where(
            col(Notification.id).in_(notification_ids),
            col(Notification.state) == NotificationState.PENDING,
            col(Notification.group_id).is_(None),
            col(Notification.sending_at).is_(None),
            or_(
                col(Notification.lease_expires_at).is_(None),
                col(Notification.lease_expires_at) < now,
            ),
        )
        .order_by(col(Notification.id))
        .with_for_update()
    )
    groups: dict[tuple[int, str, str], list[Notification]] = {}
    for notification in free:
        key = (notification.order_id, notification.update, notification.recipient)
        groups.setdefault(key, []).append(notification)
    joined = 0
    for members in groups.values():
        head = members[0].id if len(members) > 1 else None
        for notification in members:
            notification.group_id = head
            notification.next_attempt_at = now
            session.add(notification)
        if head is not None:
            joined += 1
            log.info(
                "notification %s: %s for %d shipments of order %s as one email",
                head,
                members[0].update,
                len(members),
                members[0].order_id,
            )
    session.flush()
    return joined

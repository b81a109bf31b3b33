"""Applying an extraction to the store: orders, shipments and their status."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlmodel import Session, col

from extractors.model import Extraction, Kind, ShipmentResult
from mailhandler.sanitize import db_text, display_name
from mailhandler.store.models import (
    InboundMessage,
    Notification,
    NotificationState,
    Order,
    OrderState,
    PollState,
    Shipment,
    ShipmentPoll,
    ShipmentStatus,
    UpdateType,
    utcnow,
)
from mailhandler.triggers import StatusEvent, queue_update, record_status

log = logging.getLogger("bcctrack.pipeline")

# The length of ``shipment.carrier_name``.
_MAX_CARRIER_NAME = 200

# The status an email of each kind gives the shipments it names.
STATUS_FOR_KIND: dict[Kind, ShipmentStatus] = {
    Kind.OUT_FOR_DELIVERY: ShipmentStatus.OUT_FOR_DELIVERY,
    Kind.DELIVERED: ShipmentStatus.DELIVERED,
    Kind.DELIVERY_PROBLEM: ShipmentStatus.DELIVERY_FAILED,
    Kind.AVAILABLE_FOR_PICKUP: ShipmentStatus.AVAILABLE_FOR_PICKUP,
    Kind.RETURN: ShipmentStatus.RETURNED,
}


@dataclass
class ApplyResult:
    """The store rows one email created or changed."""

    order_id: int | None = None
    shipment_ids: list[int] = field(default_factory=list)
    notification_ids: list[int] = field(default_factory=list)
    note: str = ""


def apply_extraction(
    session: Session,
    message: InboundMessage,
    extraction: Extraction,
    max_event_age: timedelta,
) -> ApplyResult:
    """Upsert the order and shipments an email names and queue its updates."""
    result = ApplyResult()
    order = _find_or_create_order(session, message, extraction)
    if order is None:
        result.note = "no order number and no tracking number"
        return result
    assert order.id is not None
    result.order_id = order.id

    if extraction.kind == Kind.CANCELLATION:
        _cancel(session, order)
        result.note = "order cancelled"
        return result

    shipments = [
        _upsert_shipment(
            session, message, order, found, extraction, result, max_event_age
        )
        for found in extraction.shipments
    ]
    _withdraw_dropped(session, message, shipments)
    status = STATUS_FOR_KIND.get(extraction.kind)
    if status is not None and not shipments:
        # An email about the order that names no tracking number (Amazon's
        # "Delivered" mails) moves the order's shipment if it has exactly one.
        # With several shipments the email does not tell which one it means.
        shipments = list(
            session.scalars(
                select(Shipment).where(
                    col(Shipment.order_id) == order.id,
                    col(Shipment.withdrawn_at).is_(None),
                )
            )
        )
        if len(shipments) != 1:
            shipments = []
    if status is not None:
        for shipment in shipments:
            event = StatusEvent(
                status=status,
                # An event taken from an email is as old as its receipt.
                occurred_at=message.received_at,
                source="email",
                raw_text=f"{extraction.kind} email",
                inbound_message_id=message.id,
            )
            created = record_status(session, shipment, order, event, max_event_age)
            if created is not None and created.id is not None:
                result.notification_ids.append(created.id)
    result.shipment_ids = [s.id for s in shipments if s.id is not None]
    return result


def apply_status_only(
    session: Session,
    message: InboundMessage,
    extraction: Extraction,
    max_event_age: timedelta,
) -> ApplyResult:
    """Move the shop's existing shipments that a carrier email names.

    A carrier email is verified for status only: it never creates an order
    or a shipment, never cancels an order, and an email of a kind without a
    status (a shipping notice, say) changes nothing.
    """
    result = ApplyResult()
    status = STATUS_FOR_KIND.get(extraction.kind)
    numbers = [found.tracking_number.upper() for found in extraction.shipments]
    if status is None or not numbers:
        result.note = f"carrier email ({extraction.kind}) moves no shipment"
        return result
    shipments = list(
        session.scalars(
            select(Shipment).where(
                col(Shipment.shop_id) == message.shop_id,
                func.upper(col(Shipment.tracking_number)).in_(numbers),
                col(Shipment.withdrawn_at).is_(None),
            )
        )
    )
    if not shipments:
        result.note = "carrier email names no shipment of this shop"
        return result
    for shipment in shipments:
        order = session.get(Order, shipment.order_id)
        assert order is not None
        event = StatusEvent(
            status=status,
            occurred_at=message.received_at,
            source="email",
            raw_text=f"{extraction.kind} email from the carrier",
            inbound_message_id=message.id,
        )
        created = record_status(session, shipment, order, event, max_event_age)
        if created is not None and created.id is not None:
            result.notification_ids.append(created.id)
    result.order_id = shipments[0].order_id
    result.shipment_ids = [s.id for s in shipments if s.id is not None]
    return result


def _find_or_create_order(
    session: Session, message: InboundMessage, extraction: Extraction
) -> Order | None:
    order: Order | None = None
    if extraction.order_number:
        order = session.scalars(
            select(Order).where(
                col(Order.shop_id) == message.shop_id,
                col(Order.order_number) == extraction.order_number,
            )
        ).first()
    else:
        # Without an order number, a shipment stored before names the order.
        numbers = [found.tracking_number for found in extraction.shipments]
        if not numbers:
            return None
        known = session.scalars(
            select(Shipment)
            .where(
                col(Shipment.shop_id) == message.shop_id,
                col(Shipment.tracking_number).in_(numbers),
                col(Shipment.withdrawn_at).is_(None),
            )
            .order_by(col(Shipment.id).desc())
        ).first()
        if known is not None:
            order = session.get(Order, known.order_id)
    if order is None:
        order = Order(
            shop_id=message.shop_id, order_number=db_text(extraction.order_number)
        )
    _fill_customer(order, extraction)
    order.updated_at = utcnow()
    session.add(order)
    session.flush()
    return order


def _fill_customer(order: Order, extraction: Extraction) -> None:
    # The first email that names the customer sets them; later emails fill
    # only what is still missing, so a forwarded copy cannot re-address
    # updates.
    if not order.customer_email and extraction.customer.email:
        order.customer_email = db_text(extraction.customer.email)
    if not order.customer_name and extraction.customer.name:
        order.customer_name = display_name(extraction.customer.name)
    if not order.language and extraction.language:
        order.language = db_text(extraction.language)


def _upsert_shipment(
    session: Session,
    message: InboundMessage,
    order: Order,
    found: ShipmentResult,
    extraction: Extraction,
    result: ApplyResult,
    max_event_age: timedelta,
) -> Shipment:
    assert order.id is not None
    same_number = list(
        session.scalars(
            select(Shipment).where(
                col(Shipment.shop_id) == message.shop_id,
                col(Shipment.tracking_number) == found.tracking_number,
            )
        )
    )
    shipment = next((s for s in same_number if s.order_id == order.id), None)
    if shipment is None:
        shipment = _adopt_orphan(session, same_number, order)
    if shipment is not None:
        if shipment.withdrawn_at is not None:
            # The message names the number again (a rule was fixed back).
            shipment.withdrawn_at = None
            resume_polling(session, shipment)
        if shipment.carrier is None and found.carrier:
            shipment.carrier = found.carrier
        if shipment.carrier_name is None and shipment.carrier == found.carrier:
            shipment.carrier_name = _printed_name(found)
        if shipment.tracking_url is None and found.tracking_url:
            shipment.tracking_url = found.tracking_url
        session.add(shipment)
        return shipment
    for other in same_number:
        # A combined parcel, or a number the carrier issued again: each order
        # gets a shipment of its own, so that each customer hears about it.
        log.info(
            "%s tracking number %s is also shipment %s of order %s",
            message.id,
            found.tracking_number,
            other.id,
            other.order_id,
        )

    shipment = Shipment(
        shop_id=message.shop_id,
        order_id=order.id,
        tracking_number=found.tracking_number,
        carrier=found.carrier,
        carrier_name=_printed_name(found),
        tracking_url=found.tracking_url,
        status=ShipmentStatus.PENDING,
        inbound_message_id=message.id,
    )
    session.add(shipment)
    session.flush()
    log.info(
        "%s shipment %s created: %s at %s",
        message.id,
        shipment.id,
        found.tracking_number,
        found.carrier or "unknown carrier",
    )
    if extraction.kind == Kind.SHIPPING_CONFIRMATION:
        created = queue_update(
            session,
            shipment,
            order,
            UpdateType.SHIPPED,
            message.received_at,
            max_event_age,
        )
        if created is not None and created.id is not None:
            result.notification_ids.append(created.id)
    return shipment


def _printed_name(found: ShipmentResult) -> str | None:
    # Only a carrier that bcctrack does not track needs the printed name;
    # the others have a display name of their own.
    if found.carrier != "other" or not found.carrier_name:
        return None
    return found.carrier_name[:_MAX_CARRIER_NAME]


def _cancel(session: Session, order: Order) -> None:
    order.state = OrderState.CANCELLED
    order.updated_at = utcnow()
    session.add(order)
    pending = session.scalars(
        select(Notification).where(
            col(Notification.order_id) == order.id,
            col(Notification.state) == NotificationState.PENDING,
        )
    )
    for notification in pending:
        notification.state = NotificationState.SUPPRESSED
        notification.reason = "order cancelled"
        session.add(notification)


def _adopt_orphan(
    session: Session, same_number: list[Shipment], order: Order
) -> Shipment | None:
    """Move a shipment stored without an order number to ``order``.

    An email that named the tracking number but no order came first; the
    email with the order number now names the order it belongs to.
    """
    for shipment in same_number:
        orphan = session.get(Order, shipment.order_id)
        if orphan is None or orphan.order_number is not None:
            continue
        shipment.order_id = order.id  # type: ignore[assignment]
        session.execute(
            update(Notification)
            .where(col(Notification.shipment_id) == shipment.id)
            .values(order_id=order.id)
        )
        session.add(shipment)
        return shipment
    return None


def _withdraw_dropped(
    session: Session, message: InboundMessage, kept: list[Shipment]
) -> None:
    """Withdraw shipments this message created that it no longer names.

    That happens when the message is processed again after a rule changed,
    typically because the first run took a wrong number. The shipment stays
    on record but is no longer polled and sends no more updates.
    """
    kept_ids = {shipment.id for shipment in kept}
    created = session.scalars(
        select(Shipment).where(
            col(Shipment.inbound_message_id) == message.id,
            col(Shipment.withdrawn_at).is_(None),
        )
    )
    for shipment in created:
        if shipment.id in kept_ids:
            continue
        shipment.withdrawn_at = utcnow()
        session.add(shipment)
        stop_polling(session, shipment)
        session.execute(
            update(Notification)
            .where(
                col(Notification.shipment_id) == shipment.id,
                col(Notification.state) == NotificationState.PENDING,
            )
            .values(
                state=NotificationState.SUPPRESSED,
                reason=f"shipment withdrawn: message {message.id} no longer names it",
            )
        )
        log.warning(
            "%s shipment %s (%s) withdrawn: the message no longer names it",
            message.id,
            shipment.id,
            shipment.tracking_number,
        )


def stop_polling(session: Session, shipment: Shipment) -> None:
    """Stop polling ``shipment``."""
    session.execute(
        update(ShipmentPoll)
        .where(col(ShipmentPoll.shipment_id) == shipment.id)
        .values(state=PollState.STOPPED)
    )


def resume_polling(session: Session, shipment: Shipment) -> None:
    """Poll ``shipment`` again from now on."""
    session.execute(
        update(ShipmentPoll)
        .where(col(ShipmentPoll.shipment_id) == shipment.id)
        .values(state=PollState.ACTIVE, next_attempt_at=utcnow(), attempts=0)
    )

"""Read-only views of the store for the ``orders`` and ``messages`` commands."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlmodel import col

from mailhandler import carrier_accounts
from mailhandler.settings import Settings
from mailhandler.store import transaction
from mailhandler.store.models import (
    DriftAlarm,
    InboundMessage,
    Notification,
    Order,
    Shipment,
    Shop,
    utcnow,
)


def _time(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def order_reports(engine: Engine, shop_slug: str | None = None) -> list[dict[str, Any]]:
    """Return each order with its customer, shipments and notifications."""
    with transaction(engine) as session:
        query = select(Order, col(Shop.slug)).join(
            Shop, col(Shop.id) == col(Order.shop_id)
        )
        if shop_slug is not None:
            query = query.where(col(Shop.slug) == shop_slug)
        rows = list(session.execute(query.order_by(col(Order.id))))
        order_ids = [order.id for order, _ in rows]
        shipments: dict[int, list[Shipment]] = defaultdict(list)
        for shipment in session.scalars(
            select(Shipment)
            .where(col(Shipment.order_id).in_(order_ids))
            .order_by(col(Shipment.id))
        ):
            shipments[shipment.order_id].append(shipment)
        notifications: dict[int, list[Notification]] = defaultdict(list)
        for notification in session.scalars(
            select(Notification)
            .where(col(Notification.order_id).in_(order_ids))
            .order_by(col(Notification.id))
        ):
            notifications[notification.order_id].append(notification)

    reports = []
    for order, slug in rows:
        assert order.id is not None
        reports.append(
            {
                "shop": slug,
                "order_number": order.order_number,
                "state": order.state,
                "customer": {
                    "email": order.customer_email,
                    "name": order.customer_name,
                },
                "language": order.language,
                "shipments": [
                    {
                        "tracking_number": s.tracking_number,
                        "carrier": s.carrier,
                        "status": s.status,
                        "tracking_url": s.tracking_url,
                        "withdrawn": s.withdrawn_at is not None,
                    }
                    for s in shipments[order.id]
                ],
                "notifications": [
                    {
                        "update": n.update,
                        "state": n.state,
                        "created_at": _time(n.created_at),
                        "sent_at": _time(n.sent_at),
                        "reason": n.reason,
                    }
                    for n in notifications[order.id]
                ],
            }
        )
    return reports


def message_reports(
    engine: Engine,
    state: str | None = None,
    shop_slug: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Return inbound messages, newest first, without their raw bytes."""
    with transaction(engine) as session:
        query = select(
            col(InboundMessage.id),
            col(Shop.slug),
            col(InboundMessage.state),
            col(InboundMessage.kind),
            col(InboundMessage.received_at),
            col(InboundMessage.processed_at),
            col(InboundMessage.attempts),
            col(InboundMessage.size),
            col(InboundMessage.message_id),
            col(InboundMessage.reason),
            col(InboundMessage.defects),
            col(InboundMessage.sender_check),
            col(InboundMessage.sender_verified),
        ).join(Shop, col(Shop.id) == col(InboundMessage.shop_id))
        if state is not None:
            query = query.where(col(InboundMessage.state) == state)
        if shop_slug is not None:
            query = query.where(col(Shop.slug) == shop_slug)
        query = query.order_by(col(InboundMessage.id).desc())
        if limit is not None:
            query = query.limit(limit)
        rows = list(session.execute(query))
    return [
        {
            "id": row.id,
            "shop": row.slug,
            "state": row.state,
            "kind": row.kind,
            "received_at": _time(row.received_at),
            "processed_at": _time(row.processed_at),
            "attempts": row.attempts,
            "size": row.size,
            "message_id": row.message_id,
            "reason": row.reason,
            "defects": row.defects or [],
            "sender_check": row.sender_check,
            "sender_verified": row.sender_verified,
        }
        for row in rows
    ]


def status_report(engine: Engine) -> dict[str, Any]:
    """Return counts of messages and notifications by state, and open alarms."""
    with transaction(engine) as session:
        inbound = dict(
            session.execute(
                select(col(InboundMessage.state), func.count()).group_by(
                    col(InboundMessage.state)
                )
            ).all()
        )
        notifications = dict(
            session.execute(
                select(col(Notification.state), func.count()).group_by(
                    col(Notification.state)
                )
            ).all()
        )
        alarms = list(
            session.execute(
                select(DriftAlarm, col(Shop.slug))
                .join(Shop, col(Shop.id) == col(DriftAlarm.shop_id))
                .where(col(DriftAlarm.resolved_at).is_(None))
                .order_by(col(DriftAlarm.id))
            )
        )
    return {
        "inbound_messages": inbound,
        "notifications": notifications,
        "drift_alarms": [
            {
                "id": alarm.id,
                "shop": slug,
                "kind": alarm.kind,
                "field": alarm.field,
                "detail": alarm.detail,
                "message_ids": alarm.message_ids,
                "since": _time(alarm.created_at),
            }
            for alarm, slug in alarms
        ],
    }


def carrier_account_reports(engine: Engine, settings: Settings) -> list[dict[str, Any]]:
    """Return the call budget of each carrier credential the poller has used.

    Times that have passed show as None: a credential that is not paused has
    ``paused_until`` None, and one that may be called now has
    ``next_call_at`` None. ``quota_limit`` 0 means no daily quota.
    """
    now = utcnow()
    today = now.date().isoformat()
    reports = []
    for account in carrier_accounts.list_accounts(engine):
        paused = account.paused_until is not None and account.paused_until > now
        waiting = carrier_accounts.waiting_count(
            engine, account.adapter, account.credential
        )
        reports.append(
            {
                "adapter": account.adapter,
                "credential": account.credential,
                "paused_until": _time(account.paused_until) if paused else None,
                "pause_reason": (
                    carrier_accounts.pause_detail(account) if paused else None
                ),
                "next_call_at": (
                    _time(account.next_call_at) if account.next_call_at > now else None
                ),
                "errors": account.errors,
                "quota_used": account.quota_used if account.quota_day == today else 0,
                "quota_limit": carrier_accounts.daily_quota(account.adapter, settings),
                "waiting_shipments": waiting,
            }
        )
    return reports

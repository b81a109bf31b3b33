"""Drift alarms: a shop's emails of one kind stop yielding what they used to.

When a shop changes its email template, the generic extractors or its rules
can stop finding the order number or the tracking numbers. After each
processed message, the shop's recent messages of that kind are compared
with the ones before them. An alarm is raised once, logged, and shown by
``bcctrack status`` with the message ids to look at. It resolves itself
when a later message of that kind yields the field again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from mailhandler.store.models import DriftAlarm, InboundMessage, InboundState, utcnow

log = logging.getLogger("bcctrack.pipeline")

# An alarm needs this many recent messages in a row without the field...
RECENT = 3
# ...after at least this many earlier ones, most of which had it.
EARLIER_MIN = 5
EARLIER_MAX = 20
EARLIER_SHARE = 0.8

FIELDS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "order_number": lambda extraction: bool(extraction.get("order_number")),
    "tracking_numbers": lambda extraction: bool(extraction.get("shipments")),
}


def check_drift(session: Session, shop_id: int, kind: str | None) -> list[DriftAlarm]:
    """Raise or resolve the drift alarms of one shop and kind; return new alarms."""
    if not kind or kind == "other":
        return []
    rows = list(
        session.execute(
            select(col(InboundMessage.id), col(InboundMessage.extraction))
            .where(
                col(InboundMessage.shop_id) == shop_id,
                col(InboundMessage.kind) == kind,
                col(InboundMessage.state) == InboundState.PROCESSED,
                col(InboundMessage.extraction).is_not(None),
            )
            .order_by(col(InboundMessage.id).desc())
            .limit(RECENT + EARLIER_MAX)
        )
    )
    raised = []
    for field_name, has_field in FIELDS.items():
        found = [(row.id, has_field(row.extraction or {})) for row in rows]
        alarm = _open_alarm(session, shop_id, kind, field_name)
        if alarm is not None:
            if found and found[0][1]:
                alarm.resolved_at = utcnow()
                session.add(alarm)
                log.info(
                    "drift alarm %s resolved: shop %s %s emails yield %s again",
                    alarm.id,
                    shop_id,
                    kind,
                    field_name,
                )
            continue
        recent, earlier = found[:RECENT], found[RECENT:]
        if len(recent) < RECENT or any(has for _, has in recent):
            continue
        if len(earlier) < EARLIER_MIN:
            continue
        share = sum(has for _, has in earlier) / len(earlier)
        if share < EARLIER_SHARE:
            continue
        alarm = DriftAlarm(
            shop_id=shop_id,
            kind=kind,
            field=field_name,
            message_ids=[message_id for message_id, _ in recent],
            detail=(
                f"the last {RECENT} {kind} emails have no {field_name}; "
                f"{share:.0%} of the {len(earlier)} before them had one"
            ),
        )
        session.add(alarm)
        session.flush()
        log.warning(
            "drift alarm %s: shop %s: %s (messages %s)",
            alarm.id,
            shop_id,
            alarm.detail,
            ", ".join(str(i) for i in alarm.message_ids),
        )
        raised.append(alarm)
    return raised


def _open_alarm(
    session: Session, shop_id: int, kind: str, field_name: str
) -> DriftAlarm | None:
    return session.scalars(
        select(DriftAlarm).where(
            col(DriftAlarm.shop_id) == shop_id,
            col(DriftAlarm.kind) == kind,
            col(DriftAlarm.field) == field_name,
            col(DriftAlarm.resolved_at).is_(None),
        )
    ).first()

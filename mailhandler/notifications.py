"""Listing notifications, and queueing failed ones again for the notifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, or_, select, update
from sqlmodel import col

from mailhandler.store import transaction
from mailhandler.store.models import (
    Notification,
    NotificationState,
    Shop,
    utcnow,
)

RETRYABLE = (NotificationState.FAILED, NotificationState.UNCONFIRMED)


def notification_reports(
    engine: Engine,
    state: str | None = None,
    shop_slug: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Return notifications, newest first, with their state and reason."""
    query = select(Notification, col(Shop.slug)).join(
        Shop, col(Shop.id) == col(Notification.shop_id)
    )
    if state is not None:
        query = query.where(col(Notification.state) == state)
    if shop_slug is not None:
        query = query.where(col(Shop.slug) == shop_slug)
    query = query.order_by(col(Notification.id).desc())
    if limit is not None:
        query = query.limit(limit)
    with transaction(engine) as session:
        rows = list(session.execute(query))
    return [
        {
            "id": notification.id,
            "shop": slug,
            "update": notification.update,
            "recipient": notification.recipient,
            "state": notification.state,
            "attempts": notification.attempts,
            "created_at": notification.created_at.isoformat(timespec="seconds"),
            "may_have_been_sent": notification.sending_at is not None,
            "reason": notification.reason,
        }
        for notification, slug in rows
    ]


@dataclass(frozen=True)
class RetryResult:
    """The notifications queued again, and those left alone with the reason."""

    queued: list[int]
    skipped: dict[int, str]


def retry_notifications(
    engine: Engine,
    ids: list[int] | None,
    states: list[str],
    shop_id: int | None = None,
    allow_duplicate: bool = False,
) -> RetryResult:
    """Put failed or unconfirmed notifications back to pending.

    A notification whose sending mark is set (every unconfirmed one, and a
    failed one whose hand-over to the relay ended without a rejection) may
    have reached the customer. It is queued again only with
    ``allow_duplicate``, and then without its mark, so that the notifier
    sends it instead of marking it unconfirmed again.
    """
    now = utcnow()
    query = select(Notification).where(
        or_(
            col(Notification.lease_expires_at).is_(None),
            col(Notification.lease_expires_at) < now,
        )
    )
    if ids is not None:
        query = query.where(col(Notification.id).in_(ids))
    else:
        query = query.where(col(Notification.state).in_(states))
    if shop_id is not None:
        query = query.where(col(Notification.shop_id) == shop_id)
    queued: list[int] = []
    skipped: dict[int, str] = {}
    with transaction(engine) as session:
        for notification in session.scalars(query.with_for_update(skip_locked=True)):
            assert notification.id is not None
            reason = _not_retried(notification, allow_duplicate)
            if reason is not None:
                skipped[notification.id] = reason
            else:
                queued.append(notification.id)
        if queued:
            session.execute(
                update(Notification)
                .where(col(Notification.id).in_(queued))
                .values(
                    state=NotificationState.PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    reason=None,
                    sending_at=None,
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
    for missing in sorted(set(ids or []) - set(queued) - set(skipped)):
        skipped[missing] = "not found, or the notifier holds it"
    return RetryResult(sorted(queued), skipped)


def _not_retried(notification: Notification, allow_duplicate: bool) -> str | None:
    if notification.state not in RETRYABLE:
        return f"state {notification.state}: only failed and unconfirmed are retried"
    if notification.sending_at is not None and not allow_duplicate:
        return (
            f"state {notification.state}: the relay may have it, so the customer "
            "may get it twice; retry with --allow-duplicate to send it anyway"
        )
    return None

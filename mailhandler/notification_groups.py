"""Claiming notifications by group, so that a group goes out as one email.

``triggers.group_updates`` gives the updates of several parcels of one order
and update type the same ``group_id``: the lowest notification id among
them, the group's head. An update on its own has no ``group_id`` and is its
own head. Every claimer locks the head row before it leases the group's
rows, on PostgreSQL with ``FOR UPDATE SKIP LOCKED``, so two processes never
take parts of one group. SQLite serializes writers, which has the same
effect. The lease, the sending mark and the final state are written on all
of a group's rows in one transaction, or on none.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, func, or_, select, update
from sqlmodel import col

from mailhandler.store import transaction
from mailhandler.store.models import Notification, NotificationState, utcnow

# Due rows read per claim. Rows of groups that another process is claiming
# are passed over, so more than one is read.
_CANDIDATES = 20


class _NotAllHeldError(Exception):
    """The owner lost the lease on a row of the group, so nothing is written."""


def group_key() -> ColumnElement[int]:
    """Return the head id of a notification's group, as an SQL expression."""
    return func.coalesce(col(Notification.group_id), col(Notification.id))


def _due(now: Any) -> ColumnElement[bool]:
    return and_(
        col(Notification.state) == NotificationState.PENDING,
        col(Notification.next_attempt_at) <= now,
        or_(
            col(Notification.lease_expires_at).is_(None),
            col(Notification.lease_expires_at) < now,
        ),
    )


def claim_group(engine: Engine, owner: str, lease: timedelta) -> int | None:
    """Lease the due rows of the next group; return the group's head id.

    Claiming adds one to each row's ``attempts``, as ``store.queue.claim``
    does. Returns None when no group is due and free.
    """
    now = utcnow()
    with transaction(engine) as session:
        candidates = session.scalars(
            select(group_key())
            .where(_due(now))
            .order_by(col(Notification.next_attempt_at), col(Notification.id))
            .limit(_CANDIDATES)
        )
        for key in dict.fromkeys(candidates):
            head = session.scalars(
                select(col(Notification.id))
                .where(col(Notification.id) == key)
                .with_for_update(skip_locked=True)
            ).first()
            if head is None:
                # Another process is claiming this group right now.
                continue
            # With the head locked, the due rows read now are the group's
            # whole due part: no other claimer can lease any of them.
            ids = list(
                session.scalars(
                    select(col(Notification.id))
                    .where(group_key() == key, _due(now))
                    .with_for_update()
                )
            )
            if not ids:
                continue
            session.execute(
                update(Notification)
                .where(col(Notification.id).in_(ids))
                .values(
                    lease_owner=owner,
                    lease_expires_at=now + lease,
                    attempts=col(Notification.attempts) + 1,
                )
            )
            return key
    return None


def held_members(engine: Engine, key: int, owner: str) -> list[Notification]:
    """Return the rows of group ``key`` leased to ``owner``, lowest id first."""
    with transaction(engine) as session:
        return list(
            session.scalars(
                select(Notification)
                .where(group_key() == key, col(Notification.lease_owner) == owner)
                .order_by(col(Notification.id))
            )
        )


def update_held(engine: Engine, ids: Sequence[int], owner: str, **values: Any) -> bool:
    """Set ``values`` on rows ``ids`` if all are still leased to ``owner``.

    Returns False, and writes nothing, when the lease on any of them was
    lost.
    """
    try:
        with transaction(engine) as session:
            result = session.execute(
                update(Notification)
                .where(
                    col(Notification.id).in_(ids),
                    col(Notification.lease_owner) == owner,
                )
                .values(**values)
            )
            if result.rowcount != len(ids):  # type: ignore[attr-defined]
                raise _NotAllHeldError
    except _NotAllHeldError:
        return False
    return True


def release_group(
    engine: Engine, ids: Sequence[int], owner: str, **values: Any
) -> bool:
    """Clear the lease on all rows ``ids`` and set ``values`` on them.

    Returns False, and writes nothing, when the lease on any of them was
    lost.
    """
    return update_held(
        engine, ids, owner, lease_owner=None, lease_expires_at=None, **values
    )

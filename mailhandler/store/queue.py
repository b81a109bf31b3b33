"""Claiming queue rows with a lease.

A claimed row belongs to one process until its lease expires; a process that
dies leaves the row to be claimed again after the lease. On PostgreSQL the
claim skips rows another transaction has locked (FOR UPDATE SKIP LOCKED), so
concurrent claimers do not wait on each other. SQLite serializes writers.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, or_, select, update

from mailhandler.store.engine import transaction
from mailhandler.store.models import utcnow


def new_owner(role: str) -> str:
    """Return a lease owner name unique to this process and role."""
    return f"{socket.gethostname()}:{os.getpid()}:{role}:{uuid.uuid4().hex[:8]}"


def claim(
    engine: Engine,
    model: Any,
    ready_state: str,
    owner: str,
    lease: timedelta,
    limit: int = 1,
    row_id: int | None = None,
) -> list[int]:
    """Lease up to ``limit`` due rows of ``model`` in ``ready_state``.

    A row is due when its ``next_attempt_at`` has passed and it has no live
    lease. Claiming adds one to its ``attempts``, so that a row that kills
    its process each time still reaches the attempt limit. With ``row_id``,
    only that row is claimed, if it is due.
    """
    now = utcnow()
    due = select(model.id).where(
        model.state == ready_state,
        model.next_attempt_at <= now,
        or_(model.lease_expires_at.is_(None), model.lease_expires_at < now),
    )
    if row_id is not None:
        due = due.where(model.id == row_id)
    due = (
        due.order_by(model.next_attempt_at, model.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    with transaction(engine) as session:
        ids = list(session.scalars(due))
        if not ids:
            return []
        session.execute(
            update(model)
            .where(model.id.in_(ids))
            .values(
                lease_owner=owner,
                lease_expires_at=now + lease,
                attempts=model.attempts + 1,
            )
        )
    return ids


def release(engine: Engine, model: Any, row_id: int, owner: str, **values: Any) -> bool:
    """Clear the lease on a row this owner holds and set ``values`` on it.

    Returns False when the lease was lost (it expired and another process
    took the row), in which case nothing is written.
    """
    with transaction(engine) as session:
        result = session.execute(
            update(model)
            .where(model.id == row_id, model.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None, **values)
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]

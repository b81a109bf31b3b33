"""The shared call budget of each carrier credential.

Pollers in several processes reserve each call in the ``carrier_account``
row of the credential, under a row lock. So together they leave the
adapter's minimum interval between calls, stay within a daily quota, wait
out a ``Retry-After`` or an error backoff, and skip a paused credential.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from mailhandler.runner import retry_delay
from mailhandler.store import transaction
from mailhandler.store.models import CarrierAccount, utcnow

log = logging.getLogger("bcctrack.poller")


@dataclass(frozen=True)
class Reservation:
    """The answer to a request for one call.

    ``at`` is when the call may go out. When the call may not go out soon,
    ``at`` is None and ``blocked_until`` and ``reason`` say why.
    """

    at: datetime | None
    blocked_until: datetime | None = None
    reason: str | None = None


def _account(session: Session, adapter: str, credential: str) -> CarrierAccount:
    bind = session.get_bind()
    insert_ = postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert
    session.execute(
        insert_(CarrierAccount)
        .values(
            adapter=adapter,
            credential=credential,
            next_call_at=utcnow(),
            errors=0,
            quota_used=0,
        )
        .on_conflict_do_nothing(index_elements=["adapter", "credential"])
    )
    return session.scalars(
        select(CarrierAccount)
        .where(
            col(CarrierAccount.adapter) == adapter,
            col(CarrierAccount.credential) == credential,
        )
        .with_for_update()
    ).one()


def reserve_call(
    engine: Engine,
    adapter: str,
    credential: str,
    min_interval: float,
    daily_quota: int,
    max_wait: timedelta,
) -> Reservation:
    """Reserve the next call slot of a credential, or say why there is none.

    A slot more than ``max_wait`` away is not reserved, so that the caller
    can hand its shipments back instead of holding them. ``daily_quota`` 0
    means no quota; the quota day is the UTC day, as DHL's is.
    """
    now = utcnow()
    with transaction(engine) as session:
        account = _account(session, adapter, credential)
        if account.paused_until is not None and account.paused_until > now:
            return Reservation(
                None, account.paused_until, account.pause_reason or "paused"
            )
        today = now.date().isoformat()
        if account.quota_day != today:
            account.quota_day = today
            account.quota_used = 0
        if daily_quota and account.quota_used >= daily_quota:
            midnight = datetime.combine(
                now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo
            )
            session.add(account)
            return Reservation(
                None, midnight, f"daily quota of {daily_quota} calls used up"
            )
        slot = max(now, account.next_call_at)
        if slot - now > max_wait:
            session.add(account)
            return Reservation(None, slot, "waiting for the carrier's rate limit")
        account.next_call_at = slot + timedelta(seconds=min_interval)
        account.quota_used += 1
        session.add(account)
        return Reservation(slot)


def record_success(engine: Engine, adapter: str, credential: str) -> None:
    """Clear the error count of a credential after a call went through."""
    with transaction(engine) as session:
        session.execute(
            update(CarrierAccount)
            .where(
                col(CarrierAccount.adapter) == adapter,
                col(CarrierAccount.credential) == credential,
                col(CarrierAccount.errors) != 0,
            )
            .values(errors=0)
        )


def record_error(
    engine: Engine,
    adapter: str,
    credential: str,
    base_delay: float,
    retry_after: float | None = None,
) -> datetime:
    """Hold back a credential's next call after an error; return until when.

    With ``retry_after`` (the carrier's ``Retry-After``, in seconds) the
    wait is exactly that. Otherwise it is ``base_delay`` doubled with each
    consecutive error, jittered by +-20 % and at most one hour.
    """
    now = utcnow()
    with transaction(engine) as session:
        account = _account(session, adapter, credential)
        account.errors += 1
        if retry_after is not None:
            wait = timedelta(seconds=retry_after)
        else:
            wait = retry_delay(account.errors, base_delay)
        account.next_call_at = max(account.next_call_at, now + wait)
        session.add(account)
        return account.next_call_at


def pause(
    engine: Engine, adapter: str, credential: str, until: datetime, reason: str
) -> None:
    """Stop every call with a credential until ``until``."""
    with transaction(engine) as session:
        account = _account(session, adapter, credential)
        account.paused_until = until
        account.pause_reason = reason[:2000]
        session.add(account)


def resume(engine: Engine, adapter: str, credential: str) -> bool:
    """End the pause of a credential; return whether it was paused."""
    with transaction(engine) as session:
        result = session.execute(
            update(CarrierAccount)
            .where(
                col(CarrierAccount.adapter) == adapter,
                col(CarrierAccount.credential) == credential,
                col(CarrierAccount.paused_until).is_not(None),
            )
            .values(paused_until=None, pause_reason=None, errors=0)
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]

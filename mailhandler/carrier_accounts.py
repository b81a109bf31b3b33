"""The shared call budget of each carrier credential.

Pollers in several processes reserve each call in the ``carrier_account``
row of the credential, under a row lock. So together they leave the
adapter's minimum interval between calls, stay within a daily quota, wait
out a ``Retry-After`` or an error backoff, and skip a paused credential.

A shipment that the poller hands back because of its credential (a pause,
the quota, the rate limit or a backoff) gets a ``last_error`` that starts
with ``waiting for ADAPTER credential 'LABEL' until ...``. Resuming the
credential makes exactly those shipments due again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from mailhandler.carriers import Credentials
from mailhandler.runner import retry_delay
from mailhandler.settings import Settings
from mailhandler.store import transaction
from mailhandler.store.models import (
    CarrierAccount,
    PollState,
    Shipment,
    ShipmentPoll,
    utcnow,
)

log = logging.getLogger("bcctrack.poller")

RATE_LIMIT_WAIT = "waiting for the carrier's rate limit"
_MAX_REASON = 2000


@dataclass(frozen=True)
class Reservation:
    """The answer to a request for one call.

    ``at`` is when the call may go out. When the call may not go out soon,
    ``at`` is None and ``blocked_until`` and ``reason`` say why.
    """

    at: datetime | None
    blocked_until: datetime | None = None
    reason: str | None = None
    # The credential is paused, which only resuming it ends early.
    paused: bool = False


@dataclass(frozen=True)
class Resumed:
    """What resuming a credential did.

    ``was_paused`` is whether a pause was in force, and ``released`` counts
    the shipments that waited for the credential and are due now.
    """

    adapter: str
    credential: str
    was_paused: bool
    released: int


def daily_quota(adapter: str, settings: Settings) -> int:
    """Return the calls per UTC day allowed with one credential; 0 is no limit."""
    if adapter == "dhl":
        return settings.dhl_daily_quota
    return 0


def key_fingerprint(credentials: Credentials) -> str:
    """Return 16 hex digits of SHA-256 over the secret values, never the secret.

    Two fingerprints differ when any of the key, client id or client secret
    differs, so a changed key can be noticed without storing it.
    """
    material = "\0".join(
        (credentials.api_key, credentials.client_id, credentials.client_secret)
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def waiting_reason(adapter: str, credential: str, until: datetime, reason: str) -> str:
    """Return the ``last_error`` of a shipment held back for its credential."""
    when = until.isoformat(timespec="seconds")
    return f"{_waiting_prefix(adapter, credential)}until {when}: {reason}"


def _waiting_prefix(adapter: str, credential: str) -> str:
    return f"waiting for {adapter} credential {credential!r} "


def _waiting_pattern(adapter: str, credential: str) -> str:
    # Adapter names and labels (shop slugs) contain no LIKE wildcards.
    return _waiting_prefix(adapter, credential) + "%"


_ANY_WAITING = "waiting for % credential '%"


def pause_detail(account: CarrierAccount) -> str:
    """Return why a credential is paused."""
    return account.pause_reason or "no reason stored"


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


def _next_midnight(now: datetime) -> datetime:
    return datetime.combine(
        now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo
    )


def _quota_used_today(account: CarrierAccount, now: datetime) -> int:
    return account.quota_used if account.quota_day == now.date().isoformat() else 0


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
            reason = f"paused after a rejection: {pause_detail(account)}"
            return Reservation(None, account.paused_until, reason, paused=True)
        today = now.date().isoformat()
        if account.quota_day != today:
            account.quota_day = today
            account.quota_used = 0
        if daily_quota and account.quota_used >= daily_quota:
            session.add(account)
            return Reservation(
                None, _next_midnight(now), f"daily quota of {daily_quota} calls used up"
            )
        slot = max(now, account.next_call_at)
        if slot - now > max_wait:
            session.add(account)
            return Reservation(None, slot, RATE_LIMIT_WAIT)
        account.next_call_at = slot + timedelta(seconds=min_interval)
        account.quota_used += 1
        session.add(account)
        return Reservation(slot)


def estimate_slots(
    engine: Engine,
    adapter: str,
    credential: str,
    min_interval: float,
    daily_quota: int,
    count: int,
) -> list[tuple[datetime, str]]:
    """Estimate when each of ``count`` calls could go out, without reserving.

    Returns one time per call with the reason it is not sooner. The poller
    keeps the calls that come soon and hands the others back for their
    estimated time, instead of holding their shipments while it waits.
    Other processes reserve slots too, so an estimate can be early.
    """
    now = utcnow()
    with transaction(engine) as session:
        account = session.scalars(
            select(CarrierAccount).where(
                col(CarrierAccount.adapter) == adapter,
                col(CarrierAccount.credential) == credential,
            )
        ).first()
    start, used, reason = now, 0, RATE_LIMIT_WAIT
    if account is not None:
        used = _quota_used_today(account, now)
        start = max(now, account.next_call_at)
        if account.paused_until is not None and account.paused_until > now:
            start = account.paused_until
            reason = f"paused after a rejection: {pause_detail(account)}"
    interval = timedelta(seconds=min_interval)
    left = daily_quota - used if daily_quota else count
    slots = []
    for index in range(count):
        if index < left:
            slots.append((start + index * interval, reason))
        else:
            after_midnight = (index - max(left, 0)) * interval
            slots.append(
                (
                    _next_midnight(now) + after_midnight,
                    f"daily quota of {daily_quota} calls used up",
                )
            )
    return slots


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
    tolerate: int = 0,
) -> datetime | None:
    """Count a failed call with a credential; return until when it rests.

    With ``retry_after`` (the carrier's ``Retry-After``, in seconds) the
    wait is exactly that. Otherwise the first ``tolerate`` consecutive
    errors hold nothing back and return None, because one failing number
    proves little about the others. After that the wait is ``base_delay``
    doubled with each further error, jittered by +-20 % and at most one hour.
    """
    now = utcnow()
    with transaction(engine) as session:
        account = _account(session, adapter, credential)
        account.errors += 1
        if retry_after is not None:
            wait = timedelta(seconds=retry_after)
        elif account.errors <= tolerate:
            session.add(account)
            return None
        else:
            wait = retry_delay(account.errors - tolerate, base_delay)
        account.next_call_at = max(account.next_call_at, now + wait)
        session.add(account)
        return account.next_call_at


def pause(
    engine: Engine,
    adapter: str,
    credential: str,
    until: datetime,
    reason: str,
    fingerprint: str,
) -> None:
    """Stop every call with a credential until ``until``.

    ``fingerprint`` is the ``key_fingerprint`` of the rejected key; a poller
    that starts with another key resumes the credential.
    """
    with transaction(engine) as session:
        account = _account(session, adapter, credential)
        account.paused_until = until
        account.pause_reason = reason[:_MAX_REASON]
        account.paused_key_fingerprint = fingerprint
        session.add(account)


def resume(
    engine: Engine, adapter: str, credential: str, shop_id: int | None = None
) -> Resumed:
    """End a credential's pause and backoff; make its waiting shipments due.

    The error count and any wait before the next call (a backoff, or a
    ``Retry-After``) are cleared too; the day's quota count is kept. With
    ``shop_id``, that shop's shipments that wait for any credential are made
    due as well, because new shop credentials change their route.
    """
    now = utcnow()
    with transaction(engine) as session:
        account = session.scalars(
            select(CarrierAccount)
            .where(
                col(CarrierAccount.adapter) == adapter,
                col(CarrierAccount.credential) == credential,
            )
            .with_for_update()
        ).first()
        was_paused = bool(
            account is not None
            and account.paused_until is not None
            and account.paused_until > now
        )
        if account is not None:
            if account.errors:
                # The wait is a backoff or a Retry-After, not the spacing
                # of reserved calls, which stays.
                account.next_call_at = min(account.next_call_at, now)
            account.paused_until = None
            account.pause_reason = None
            account.paused_key_fingerprint = None
            account.errors = 0
            session.add(account)
        released = _release_waiting(session, _waiting_pattern(adapter, credential))
        if shop_id is not None:
            released += _release_waiting(session, _ANY_WAITING, shop_id)
    return Resumed(adapter, credential, was_paused, released)


def forget(engine: Engine, adapter: str, credential: str, shop_id: int) -> Resumed:
    """Delete a shop credential's budget row; make the shop's waiting shipments due.

    Called when a shop's own credentials are removed: its shipments then go
    to the configured credentials, which owe nothing to the old row.
    """
    with transaction(engine) as session:
        result = session.execute(
            delete(CarrierAccount).where(
                col(CarrierAccount.adapter) == adapter,
                col(CarrierAccount.credential) == credential,
            )
        )
        released = _release_waiting(session, _ANY_WAITING, shop_id)
    removed = bool(result.rowcount)  # type: ignore[attr-defined]
    return Resumed(adapter, credential, removed, released)


def _release_waiting(session: Session, pattern: str, shop_id: int | None = None) -> int:
    """Make due the active, unleased polls whose last error is LIKE ``pattern``."""
    now = utcnow()
    query = (
        update(ShipmentPoll)
        .where(
            col(ShipmentPoll.state) == PollState.ACTIVE,
            col(ShipmentPoll.next_attempt_at) > now,
            col(ShipmentPoll.lease_owner).is_(None),
            col(ShipmentPoll.last_error).like(pattern),
        )
        .values(next_attempt_at=now)
    )
    if shop_id is not None:
        shipments = select(col(Shipment.id)).where(col(Shipment.shop_id) == shop_id)
        query = query.where(col(ShipmentPoll.shipment_id).in_(shipments))
    result = session.execute(query)
    return int(result.rowcount)  # type: ignore[attr-defined]


def resume_changed_keys(
    engine: Engine, fingerprints: Mapping[tuple[str, str], str]
) -> list[Resumed]:
    """Resume each paused credential whose key changed since the rejection.

    ``fingerprints`` maps (adapter, credential label) to the fingerprint of
    the key in use now. A credential without an entry has no key any more,
    which counts as a change too. A pause stored without a fingerprint stays.
    """
    now = utcnow()
    with transaction(engine) as session:
        paused = list(
            session.scalars(
                select(CarrierAccount).where(col(CarrierAccount.paused_until) > now)
            )
        )
    changed = [
        account
        for account in paused
        if (recorded := account.paused_key_fingerprint) is not None
        and fingerprints.get((account.adapter, account.credential)) != recorded
    ]
    resumed = []
    for account in changed:
        done = resume(engine, account.adapter, account.credential)
        log.info(
            "%s credential %r resumed: its key changed since the carrier "
            "rejected it; %d shipment(s) due now",
            account.adapter,
            account.credential,
            done.released,
        )
        resumed.append(done)
    return resumed


def waiting_count(engine: Engine, adapter: str, credential: str) -> int:
    """Return how many shipments wait for a credential right now."""
    with transaction(engine) as session:
        count = session.scalar(
            select(func.count())
            .select_from(ShipmentPoll)
            .where(
                col(ShipmentPoll.state) == PollState.ACTIVE,
                col(ShipmentPoll.next_attempt_at) > utcnow(),
                col(ShipmentPoll.last_error).like(
                    _waiting_pattern(adapter, credential)
                ),
            )
        )
    return int(count or 0)


def list_accounts(engine: Engine) -> list[CarrierAccount]:
    """Return every credential's budget row, by adapter and label."""
    with transaction(engine) as session:
        return list(
            session.scalars(
                select(CarrierAccount).order_by(
                    col(CarrierAccount.adapter), col(CarrierAccount.credential)
                )
            )
        )

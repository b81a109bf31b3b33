"""The pipeline worker: parse, verify sender, extract, apply, one message at a time.

A message's processing either commits whole (its order, shipments, events,
notifications and final state in one transaction) or changes nothing but its
attempt count and reason. A message that keeps failing is retried with
backoff up to the attempt limit and then set ``failed``. It does not stop the
worker, and the messages behind it are claimed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, or_, select, update
from sqlmodel import col

from extractors import extract_message
from extractors.model import Extraction
from mailhandler.apply import apply_extraction, apply_status_only
from mailhandler.carrier_mail import POLICY_CARRIER, check_carrier_sender
from mailhandler.drift import check_drift
from mailhandler.rules import RuleBook
from mailhandler.runner import retry_delay, wait_for_work
from mailhandler.sandbox import (
    Extract,
    ProcessedContent,
    ProcessingError,
    SandboxPool,
)
from mailhandler.sanitize import clean_extraction, db_text
from mailhandler.sender import (
    POLICY_DKIM,
    SenderCheck,
    TxtResolver,
    check_sender,
    default_resolver,
)
from mailhandler.settings import Settings
from mailhandler.store import transaction
from mailhandler.store.models import InboundMessage, InboundState, Shop, utcnow
from mailhandler.store.queue import claim, new_owner, release
from mailhandler.triggers import group_updates

log = logging.getLogger("bcctrack.pipeline")

_MAX_REASON = 2000


class LeaseLostError(Exception):
    """Another process took over the message while this one worked on it."""


@dataclass(frozen=True)
class Outcome:
    """The final state of one processing attempt, with its reason."""

    state: InboundState
    reason: str | None = None


class Pipeline:
    """Processes inbound messages from the store."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        on_processed: Callable[[], None] | None = None,
        extract: Extract = extract_message,
        resolver: TxtResolver | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        # DNS lookups of DKIM keys; tests pass a resolver with their own keys.
        self.resolver = resolver or default_resolver(settings.dkim_keys_file)
        self.rulebook = RuleBook(settings.rules_folder, settings.rule_timeout)
        self.sandboxes = SandboxPool(
            settings.workers,
            extract,
            settings.processing_timeout,
            settings.processing_memory_limit,
        )
        # Called after a message was applied, to wake the notifier.
        self.on_processed = on_processed
        self.owner = new_owner("worker")
        self.lease = timedelta(seconds=settings.lease_seconds)
        self.max_event_age = timedelta(hours=settings.max_event_age_hours)

    def close(self) -> None:
        """Stop the child processes of the sandboxes."""
        self.sandboxes.close()

    def claim_next(self) -> int | None:
        """Lease the next due message; return its id or None."""
        ids = claim(
            self.engine, InboundMessage, InboundState.QUEUED, self.owner, self.lease
        )
        return ids[0] if ids else None

    def claim(self, message_id: int) -> bool:
        """Lease the message ``message_id`` if it is queued and free."""
        ids = claim(
            self.engine,
            InboundMessage,
            InboundState.QUEUED,
            self.owner,
            self.lease,
            row_id=message_id,
        )
        return bool(ids)

    def renew(self, message_id: int) -> bool:
        """Extend this pipeline's lease on a message; False if it lost it."""
        with transaction(self.engine) as session:
            renewed = session.execute(
                update(InboundMessage)
                .where(
                    col(InboundMessage.id) == message_id,
                    col(InboundMessage.lease_owner) == self.owner,
                )
                .values(lease_expires_at=utcnow() + self.lease)
            )
        return bool(renewed.rowcount)  # type: ignore[attr-defined]

    def process(self, message_id: int) -> Outcome | None:
        """Process a message this worker has claimed.

        Returns None when the lease was lost to another process.
        """
        try:
            outcome = self._process(message_id)
        except LeaseLostError:
            log.warning(
                "%d lease lost, leaving the message to its new owner", message_id
            )
            return None
        except Exception as error:
            return self._record_failure(message_id, error)
        log.info(
            "%d %s%s",
            message_id,
            outcome.state,
            f": {outcome.reason}" if outcome.reason else "",
        )
        return outcome

    def _process(self, message_id: int) -> Outcome:
        with transaction(self.engine) as session:
            message = session.get(InboundMessage, message_id)
            if message is None:
                raise LookupError(f"inbound message {message_id} not found")
            shop = session.get(Shop, message.shop_id)
            if shop is None:
                raise LookupError(f"shop {message.shop_id} not found")

        # Parsing and extraction run outside any transaction, because they are
        # the slow part and touch nothing in the store. They run in a child
        # process that the time limit can stop.
        rules = self.rulebook.get(shop.slug)
        with self.sandboxes.sandbox() as sandbox:
            content = sandbox.run(message.raw, rules)
        # A carrier's own email counts for status only. Under the dkim policy
        # it must carry a valid signature of that carrier too.
        check = check_carrier_sender(
            content.from_,
            shop.sender_domains,
            message.raw if shop.sender_policy == POLICY_DKIM else None,
            self.resolver,
        ) or check_sender(
            shop.sender_policy,
            message.raw,
            shop.sender_domains,
            content.from_,
            message.mail_from,
            self.resolver,
        )
        return self._finish(message, content, check)

    def _finish(
        self,
        message: InboundMessage,
        content: ProcessedContent,
        check: SenderCheck,
    ) -> Outcome:
        extraction = clean_extraction(content.extraction)
        if not check.verified:
            outcome = Outcome(
                InboundState.QUARANTINED, f"sender not verified: {check.detail}"
            )
        elif _carries_nothing(extraction):
            outcome = Outcome(
                InboundState.IGNORED, "no order number or tracking number found"
            )
        else:
            outcome = Outcome(InboundState.PROCESSED)

        with transaction(self.engine) as session:
            # The state update comes first and checks the lease, so that a
            # process that lost the message writes nothing at all.
            claimed = session.execute(
                update(InboundMessage)
                .where(
                    col(InboundMessage.id) == message.id,
                    col(InboundMessage.lease_owner) == self.owner,
                )
                .values(
                    state=outcome.state,
                    reason=db_text(outcome.reason),
                    defects=_unique(
                        [db_text(d) or "" for d in content.defects] + extraction.defects
                    ),
                    kind=extraction.kind,
                    sender_check=check.policy,
                    sender_verified=check.verified,
                    sender_detail=db_text(check.detail),
                    extraction=extraction.to_json(),
                    processed_at=utcnow(),
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
            if not claimed.rowcount:  # type: ignore[attr-defined]
                raise LeaseLostError(str(message.id))
            if outcome.state == InboundState.PROCESSED:
                apply = apply_extraction
                if check.policy == POLICY_CARRIER:
                    apply = apply_status_only
                result = apply(session, message, extraction, self.max_event_age)
                # The updates one email triggers for several parcels of an
                # order go out as one email.
                group_updates(session, result.notification_ids)
                if result.note:
                    log.info("%d %s", message.id, result.note)
                check_drift(session, message.shop_id, extraction.kind)
        if outcome.state == InboundState.PROCESSED and self.on_processed is not None:
            self.on_processed()
        return outcome

    def _record_failure(self, message_id: int, error: Exception) -> Outcome | None:
        if isinstance(error, ProcessingError):
            # The child process already named the exception type.
            reason = db_text(str(error)[:_MAX_REASON]) or ""
        else:
            reason = db_text(f"{type(error).__name__}: {error}"[:_MAX_REASON]) or ""
        with transaction(self.engine) as session:
            message = session.get(InboundMessage, message_id)
            attempts = message.attempts if message is not None else 0
        permanent = isinstance(error, ProcessingError) and error.permanent
        if permanent:
            # An email that cannot be parsed ("nesting too deep") is an
            # expected, final failure. Its reason explains it without a traceback.
            state = InboundState.FAILED
            next_attempt = utcnow()
            log.warning("%d failed: %s", message_id, reason)
        elif attempts >= self.settings.max_attempts:
            state = InboundState.FAILED
            next_attempt = utcnow()
            log.error(
                "%d failed after %d attempts: %s",
                message_id,
                attempts,
                reason,
                exc_info=error,
            )
        else:
            state = InboundState.QUEUED
            next_attempt = utcnow() + retry_delay(attempts, self.settings.retry_delay)
            log.warning(
                "%d attempt %d of %d failed, retrying at %s: %s",
                message_id,
                attempts,
                self.settings.max_attempts,
                next_attempt.isoformat(timespec="seconds"),
                reason,
                exc_info=error,
            )
        kept = release(
            self.engine,
            InboundMessage,
            message_id,
            self.owner,
            state=state,
            reason=reason,
            next_attempt_at=next_attempt,
        )
        if not kept:
            return None
        return Outcome(state, reason)


def requeue(
    engine: Engine,
    message_ids: list[int] | None = None,
    states: list[InboundState] | None = None,
    shop_id: int | None = None,
    claim_for: Pipeline | None = None,
) -> list[int]:
    """Queue messages again with a fresh attempt count; return their ids.

    Messages are chosen by id, or by state (and shop); a message that a
    worker has leased right now is left alone. With ``claim_for``, the messages
    are leased to that pipeline in the same transaction, so that a running
    service does not take them first.
    """
    now = utcnow()
    query = select(col(InboundMessage.id)).where(
        or_(
            col(InboundMessage.lease_expires_at).is_(None),
            col(InboundMessage.lease_expires_at) < now,
        )
    )
    if message_ids is not None:
        query = query.where(col(InboundMessage.id).in_(message_ids))
    if states is not None:
        query = query.where(col(InboundMessage.state).in_(states))
    if shop_id is not None:
        query = query.where(col(InboundMessage.shop_id) == shop_id)
    with transaction(engine) as session:
        found = session.scalars(query.with_for_update(skip_locked=True))
        ids = [message_id for message_id in found if message_id is not None]
        if ids:
            session.execute(
                update(InboundMessage)
                .where(col(InboundMessage.id).in_(ids))
                .values(
                    state=InboundState.QUEUED,
                    attempts=0 if claim_for is None else 1,
                    next_attempt_at=now,
                    reason=None,
                    lease_owner=None if claim_for is None else claim_for.owner,
                    lease_expires_at=None
                    if claim_for is None
                    else now + claim_for.lease,
                )
            )
    return sorted(ids)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _carries_nothing(extraction: Extraction) -> bool:
    # Whatever its kind, an email without an order number and without a
    # tracking number changes nothing in the store.
    return not extraction.order_number and not extraction.shipments


async def run_workers(
    pipeline: Pipeline, wake: asyncio.Event, stop: asyncio.Event, count: int
) -> None:
    """Run ``count`` workers until ``stop`` is set."""
    await asyncio.gather(*(_work(pipeline, wake, stop) for _ in range(count)))


async def _work(pipeline: Pipeline, wake: asyncio.Event, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            message_id = await asyncio.to_thread(pipeline.claim_next)
        except Exception:
            log.exception("claiming an inbound message failed")
            message_id = None
        if message_id is None:
            await wait_for_work(wake, stop, pipeline.settings.poll_interval)
            continue
        await asyncio.to_thread(pipeline.process, message_id)

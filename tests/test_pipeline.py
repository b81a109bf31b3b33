"""The pipeline worker on both stores: outcomes, retries, sender checks, triggers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from sqlmodel import Session

from extractors.message import ParsedMessage
from extractors.model import Customer, Extraction, Kind, ShipmentResult
from mailhandler.inbound import Envelope, store_inbound
from mailhandler.pipeline import Pipeline, requeue
from mailhandler.settings import Settings
from mailhandler.shops import add_shop
from mailhandler.store.models import (
    InboundMessage,
    InboundState,
    Notification,
    NotificationState,
    Order,
    OrderState,
    Shipment,
    ShipmentStatus,
    utcnow,
)

TRACKING = "1Z999AA10123456784"


class ScriptedExtractor:
    """Returns the extraction the message's subject names.

    Subjects with "poison" raise, "hang" never return, "die" exit the process
    and "hog" exhaust memory. It runs in the pipeline's child process, so it
    keeps no state.
    """

    def __call__(self, message: ParsedMessage) -> Extraction:
        if "poison" in message.subject:
            raise RuntimeError("extractor crashed on purpose")
        if "hang" in message.subject:
            while True:
                time.sleep(1)
        if "die" in message.subject:
            os._exit(3)
        if "hog" in message.subject:
            hoard = [bytearray(64 * 1024 * 1024) for _ in range(1000)]
            return Extraction(order_number=str(len(hoard)))
        kind = Kind.OTHER
        for candidate in Kind:
            if candidate.value in message.subject:
                kind = candidate
        shipments = []
        if kind != Kind.ORDER_CONFIRMATION and "no-tracking" not in message.subject:
            shipments = [
                ShipmentResult(TRACKING, "ups", f"https://ups.test/{TRACKING}")
            ]
        if kind == Kind.OTHER:
            return Extraction()
        return Extraction(
            kind=kind,
            order_number="1001",
            shipments=shipments,
            customer=Customer("customer@example.com", "Chris Customer"),
            language="de",
        )


def _raw(
    subject: str, sender: str = "orders@shop.example", message_id: str = ""
) -> bytes:
    message_id = message_id or f"<{abs(hash(subject))}@shop.example>"
    return (
        f"From: Shop <{sender}>\r\nTo: Chris Customer <customer@example.com>\r\n"
        f"Subject: {subject}\r\nMessage-ID: {message_id}\r\n\r\nbody\r\n"
    ).encode()


def _settings(tmp_path: Path, **values: Any) -> Settings:
    defaults: dict[str, Any] = {"retry_delay": 0.001, "max_attempts": 3}
    return Settings(data_dir=tmp_path, **{**defaults, **values})


@pytest.fixture
def make_pipeline() -> Iterator[Callable[..., Pipeline]]:
    """Build pipelines and stop their child processes after the test."""
    built: list[Pipeline] = []

    def make(*args: Any, **kwargs: Any) -> Pipeline:
        pipeline = Pipeline(*args, **kwargs)
        built.append(pipeline)
        return pipeline

    yield make
    for pipeline in built:
        pipeline.close()


@pytest.fixture
def shop_id(engine: Engine) -> int:
    shop = add_shop(engine, "acme", "Acme", ["shop.example"])
    assert shop.id is not None
    return shop.id


def _receive(engine: Engine, shop_id: int, raw: bytes, mail_from: str = "") -> int:
    envelope = Envelope(mail_from=mail_from or "bounce@shop.example", rcpt_tos=["x"])
    return store_inbound(engine, [shop_id], raw, envelope)[0].id


def _drain(pipeline: Pipeline, rounds: int = 20) -> None:
    # Process until nothing is due, making retries due at once.
    for _ in range(rounds):
        with Session(pipeline.engine) as session, session.begin():
            session.execute(
                update(InboundMessage)
                .where(InboundMessage.state == InboundState.QUEUED)
                .values(next_attempt_at=utcnow() - timedelta(seconds=1))
            )
        message_id = pipeline.claim_next()
        if message_id is None:
            return
        pipeline.process(message_id)


def _message(engine: Engine, message_id: int) -> InboundMessage:
    with Session(engine) as session:
        message = session.get(InboundMessage, message_id)
        assert message is not None
        return message


def _notifications(engine: Engine) -> list[Notification]:
    with Session(engine) as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


def test_shipping_confirmation_creates_order_shipment_and_update(
    engine: Engine, tmp_path: Path, shop_id: int, make_pipeline: Callable[..., Pipeline]
) -> None:
    pipeline = make_pipeline(engine, _settings(tmp_path), extract=ScriptedExtractor())
    message_id = _receive(engine, shop_id, _raw("shipping_confirmation"))
    _drain(pipeline)

    message = _message(engine, message_id)
    assert message.state == InboundState.PROCESSED
    assert message.kind == Kind.SHIPPING_CONFIRMATION
    assert message.sender_check == "domain"
    assert message.sender_verified is True
    assert message.lease_owner is None
    with Session(engine) as session:
        order = session.scalars(select(Order)).one()
        shipment = session.scalars(select(Shipment)).one()
    assert order.order_number == "1001"
    assert order.customer_email == "customer@example.com"
    assert order.language == "de"
    assert shipment.tracking_number == TRACKING
    assert shipment.status == ShipmentStatus.PENDING
    notifications = _notifications(engine)
    assert [(n.update, n.state) for n in notifications] == [("shipped", "pending")]
    assert notifications[0].recipient == "customer@example.com"


def test_second_shipping_email_queues_no_second_update(
    engine: Engine, tmp_path: Path, shop_id: int, make_pipeline: Callable[..., Pipeline]
) -> None:
    pipeline = make_pipeline(engine, _settings(tmp_path), extract=ScriptedExtractor())
    _receive(
        engine, shop_id, _raw("shipping_confirmation", message_id="<a@shop.example>")
    )
    _receive(
        engine, shop_id, _raw("shipping_confirmation", message_id="<b@shop.example>")
    )
    _drain(pipeline)
    assert len(_notifications(engine)) == 1


def test_foreign_sender_quarantined_and_sends_nothing(
    engine: Engine, tmp_path: Path, shop_id: int, make_pipeline: Callable[..., Pipeline]
) -> None:
    pipeline = make_pipeline(engine, _settings(tmp_path), extract=ScriptedExtractor())
    raw = _raw("shipping_confirmation", sender="orders@evil.example")
    message_id = _receive(engine, shop_id, raw, mail_from="bounce@evil.example")
    _drain(pipeline)

    message = _message(engine, message_id)
    assert message.state == InboundState.QUARANTINED
    assert message.sender_verified is False
    assert message.reason is not None
    assert "evil.example" in message.reason
    with Session(engine) as session:
        assert session.scalars(select(Order)).all() == []
    assert _notifications(engine) == []


@pytest.mark.parametrize(
    ("sender", "mail_from"),
    [
        ("orders@mail.shop.example", "bounce@esp.example"),
        ("orders@evil.example", "bounce@bounces.shop.example"),
    ],
)
def test_subdomain_or_envelope_sender_verifies(
    engine: Engine,
    tmp_path: Path,
    shop_id: int,
    make_pipeline: Callable[..., Pipeline],
    sender: str,
    mail_from: str,
) -> None:
    pipeline = make_pipeline(engine, _settings(tmp_path), extract=ScriptedExtractor())
    raw = _raw("shipping_confirmation", sender=sender)
    message_id = _receive(engine, shop_id, raw, mail_from=mail_from)
    _drain(pipeline)
    assert _message(engine, message_id).state == InboundState.PROCESSED


def test_lookalike_domain_not_verified(
    engine: Engine, tmp_path: Path, shop_id: int, make_pipeline: Callable[..., Pipeline]
) -> None:
    pipeline = make_pipeline(engine, _settings(tmp_path), extract=ScriptedExtractor())
    raw = _raw("shipping_confirmation", sender="orders@evilshop.example")
    message_id = _receive(engine, shop_id, raw, mail_from="b@shop.example.evil.test")
    _drain(pipeline)
    assert _message(engine, message_id).state == InboundState.QUARANTINED


def test_poison_message_fails_after_attempts_without_blocking(
    engine: Engine, tmp_path: Path, shop_id: int, make_pipeline: Callable[..., Pipeline]
) -> None:
    pipeline = make_pipeline(engine, _settings(tmp_path), extract=ScriptedExtractor())
    poison = _receive(engine, shop_id, _raw("poison"))
    good = _receive(engine, shop_id, _raw("shipping_confirmation"))
    _drain(pipeline)

    failed = _message(engine, poison)
    assert failed.state == InboundState.FAILED
    assert failed.attempts == 3
    assert failed.reason == "RuntimeError: extractor crashed on purpose"
    assert _message(engine, good).state == InboundState.PROCESSED


def test_retry_waits_for_backoff(
    engine: Engine, tmp_path: Path, shop_id: int, make_pipeline: Callable[..., Pipeline]
) -> None:
    settings = Settings(data_dir=tmp_path, retry_delay=3600, max_attempts=3)
    pipeline = make_pipeline(engine, settings, extract=ScriptedExtractor())
    poison = _receive(engine, shop_id, _raw("poison"))
    claimed = pipeline.claim_next()
    assert claimed == poison
    pipeline.process(poison)
    message = _message(engine, poison)
    assert message.state == InboundState.QUEUED
    assert message.next_attempt_at > utcnow() + timedelta(minutes=30)
    assert pipeline.claim_next() is None


def test_broken_mime_processed_with_defects(
    engine: Engine, tmp_path: Path, shop_id: int, make_pipeline: Callable[..., Pipeline]
) -> None:
    pipeline = make_pipeline(engine, _settings(tmp_path))
    broken = (
        b"From: Shop <orders@shop.example>\r\nTo: Chris <customer@example.com>\r\n"
        b"Subject: Your order 1001 has shipped\r\nMessage-ID: <broken@shop.example>\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b1"\r\n'
        b"\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Tracking number: 1Z999AA10123456784\r\n"
    )
    next_one = (
        b"From: Shop <orders@shop.example>\r\nTo: Chris <customer@example.com>\r\n"
        b"Subject: Thank you for your order 1002\r\nMessage-ID: <n@shop.example>\r\n"
        b"\r\nOrder number: 1002\r\n"
    )
    broken_id = _receive(engine, shop_id, broken)
    next_id = _receive(engine, shop_id, next_one)
    _drain(pipeline)

    message = _message(engine, broken_id)
    assert message.state == InboundState.PROCESSED
    assert any("CloseBoundaryNotFound" in defect for defect in message.defects)
    with Session(engine) as session:
        shipment = session.scalars(select(Shipment)).one()
    assert shipment.tracking_number == "1Z999AA10123456784"
    assert _message(engine, next_id).state == InboundState.PROCESSED


def test_real_extractor_never_crashes_the_worker_on_garbage(
    engine: Engine, tmp_path: Path, shop_id: int, make_pipeline: Callable[..., Pipeline]
) -> None:
    pipeline = make_pipeline(engine, _settings(tmp_path))
    garbage = [
        b"",
        b"\x00\xff\xfe" * 100,
        b"From: orders@shop.example\r\nContent-Type: multipart/mixed\r\n\r\n--\r\n",
        b"From: orders@shop.example\r\nContent-Transfer-Encoding: base64\r\n\r\n@@@",
    ]
    ids = [_receive(engine, shop_id, raw) for raw in garbage]
    _drain(pipeline)
    for message_id in ids:
        assert _message(engine, message_id).state != InboundState.QUEUED


def test_out_for_delivery_email_moves_shipment(
    engine: Engine, tmp_path: Path, shop_id: int, make_pipeline: Callable[..., Pipeline]
) -> None:
    pipeline = make_pipeline(engine, _settings(tmp_path), extract=ScriptedExtractor())
    _receive(engine, shop_id, _raw("shipping_confirmation"))
    _receive(engine, shop_id, _raw("out_for_delivery"))
    _receive(engine, shop_id, _raw("delivered no-tracking"))
    _drain(pipeline)
    with Session(engine) as session:
        shipment = session.scalars(select(Shipment)).one()
    assert shipment.status == ShipmentStatus.DELIVERED
    updates = [n.update for n in _notifications(engine)]
    assert updates == ["shipped", "out_for_delivery", "delivered"]


def test_cancellation_suppresses_pending_updates(
    engine: Engine, tmp_path: Path, shop_id: int, make_pipeline: Callable[..., Pipeline]
) -> None:
    pipeline = make_pipeline(engine, _settings(tmp_path), extract=ScriptedExtractor())
    _receive(engine, shop_id, _raw("shipping_confirmation"))
    _receive(engine, shop_id, _raw("cancellation"))
    _drain(pipeline)
    with Session(engine) as session:
        order = session.scalars(select(Order)).one()
    assert order.state == OrderState.CANCELLED
    notification = _notifications(engine)[0]
    assert notification.state == NotificationState.SUPPRESSED
    assert notification.reason == "order cancelled"


def test_expired_lease_is_claimed_again(
    engine: Engine, tmp_path: Path, shop_id: int, make_pipeline: Callable[..., Pipeline]
) -> None:
    settings = _settings(tmp_path)
    crashed = make_pipeline(engine, settings, extract=ScriptedExtractor())
    message_id = _receive(engine, shop_id, _raw("shipping_confirmation"))
    assert crashed.claim_next() == message_id
    # The first owner dies here; a new process takes the message over.
    survivor = make_pipeline(engine, settings, extract=ScriptedExtractor())
    assert survivor.claim_next() is None
    with Session(engine) as session, session.begin():
        session.execute(
            update(InboundMessage).values(
                lease_expires_at=utcnow() - timedelta(seconds=1)
            )
        )
    assert survivor.claim_next() == message_id
    assert survivor.process(message_id) is not None
    assert crashed.process(message_id) is None
    assert _message(engine, message_id).state == InboundState.PROCESSED
    assert len(_notifications(engine)) == 1


@pytest.mark.parametrize(
    ("subject", "timeout", "reason"),
    [
        ("hang", 1.0, "processing timed out after 1 s; the child process was stopped"),
        ("die", 30.0, "the processing child process died (exit code 3)"),
        ("hog", 30.0, "MemoryError: "),
    ],
)
def test_runaway_extraction_stopped_and_failed(
    engine: Engine,
    tmp_path: Path,
    shop_id: int,
    make_pipeline: Callable[..., Pipeline],
    subject: str,
    timeout: float,
    reason: str,
) -> None:
    settings = _settings(
        tmp_path,
        max_attempts=2,
        processing_timeout=timeout,
        processing_memory_limit=768 * 1024 * 1024,
    )
    pipeline = make_pipeline(engine, settings, extract=ScriptedExtractor())
    runaway = _receive(engine, shop_id, _raw(subject))
    good = _receive(engine, shop_id, _raw("shipping_confirmation"))
    _drain(pipeline)
    failed = _message(engine, runaway)
    assert failed.state == InboundState.FAILED
    assert failed.reason == reason
    assert failed.attempts == 2
    assert _message(engine, good).state == InboundState.PROCESSED


def test_requeue_failed_runs_again_after_fix(
    engine: Engine,
    tmp_path: Path,
    shop_id: int,
    make_pipeline: Callable[..., Pipeline],
) -> None:
    broken = make_pipeline(engine, _settings(tmp_path), extract=ScriptedExtractor())
    message_id = _receive(engine, shop_id, _raw("poison shipping_confirmation"))
    _drain(broken)
    assert _message(engine, message_id).state == InboundState.FAILED

    # The fix: an extractor that no longer crashes on this message.
    assert requeue(engine, states=[InboundState.FAILED]) == [message_id]
    requeued = _message(engine, message_id)
    assert requeued.state == InboundState.QUEUED
    assert requeued.attempts == 0
    assert requeued.reason is None
    fixed = make_pipeline(engine, _settings(tmp_path), extract=FixedExtractor())
    assert fixed.claim(message_id)
    outcome = fixed.process(message_id)
    assert outcome is not None
    assert outcome.state == InboundState.PROCESSED
    assert len(_notifications(engine)) == 1


def test_requeue_skips_leased_message(
    engine: Engine,
    tmp_path: Path,
    shop_id: int,
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline(engine, _settings(tmp_path), extract=ScriptedExtractor())
    message_id = _receive(engine, shop_id, _raw("shipping_confirmation"))
    assert pipeline.claim_next() == message_id
    assert requeue(engine, message_ids=[message_id]) == []
    assert not pipeline.claim(message_id)


class FixedExtractor(ScriptedExtractor):
    """ScriptedExtractor after the fix: "poison" no longer raises."""

    def __call__(self, message: ParsedMessage) -> Extraction:
        message.subject = message.subject.replace("poison", "")
        return super().__call__(message)


def test_second_foreign_author_not_verified() -> None:
    from extractors.message import Address
    from mailhandler.sender import check_sender_domain

    authors = [Address("x@evil.test"), Address("orders@shop.example")]
    assert not check_sender_domain(["shop.example"], authors, "b@evil.test").verified
    assert check_sender_domain(["shop.example"], authors[1:], "").verified


class NumberFromSubject(ScriptedExtractor):
    """A shipping confirmation whose order and tracking number the subject gives."""

    def __call__(self, message: ParsedMessage) -> Extraction:
        order, number = message.subject.split()[-2:]
        return Extraction(
            kind=Kind.SHIPPING_CONFIRMATION,
            order_number=order,
            shipments=[ShipmentResult(number, "ups", None)],
            customer=Customer(f"{order}@example.com", None),
        )


def _shipments(engine: Engine) -> list[Shipment]:
    with Session(engine) as session:
        return list(session.scalars(select(Shipment).order_by(Shipment.id)))


def test_two_orders_one_number_each_get_shipment(
    engine: Engine,
    tmp_path: Path,
    shop_id: int,
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline(engine, _settings(tmp_path), extract=NumberFromSubject())
    _receive(engine, shop_id, _raw("shipped A1 1ZSAME"))
    _receive(engine, shop_id, _raw("shipped B2 1ZSAME"))
    _drain(pipeline)
    shipments = _shipments(engine)
    assert [s.tracking_number for s in shipments] == ["1ZSAME", "1ZSAME"]
    assert shipments[0].order_id != shipments[1].order_id
    recipients = sorted(n.recipient for n in _notifications(engine))
    assert recipients == ["A1@example.com", "B2@example.com"]


def test_reprocess_withdraws_dropped_shipment(
    engine: Engine,
    tmp_path: Path,
    shop_id: int,
    make_pipeline: Callable[..., Pipeline],
) -> None:
    first = make_pipeline(engine, _settings(tmp_path), extract=NumberFromSubject())
    message_id = _receive(engine, shop_id, _raw("shipped A1 1ZWRONG"))
    _drain(first)
    # A rule fixed the number: the same message now names another one.
    with Session(engine) as session, session.begin():
        message = session.get(InboundMessage, message_id)
        assert message is not None
        message.raw = message.raw.replace(b"1ZWRONG", b"1ZRIGHT")
        session.add(message)
    assert requeue(engine, message_ids=[message_id]) == [message_id]
    _drain(first)
    wrong, right = _shipments(engine)
    assert wrong.tracking_number == "1ZWRONG"
    assert wrong.withdrawn_at is not None
    assert right.tracking_number == "1ZRIGHT"
    assert right.withdrawn_at is None
    assert right.order_id == wrong.order_id


def _nested(depth: int) -> bytes:
    content = b"Content-Type: text/plain\r\n\r\nTracking number: 1Z999AA10123456784"
    for level in range(depth):
        boundary = b"nest%d" % level
        content = (
            b'Content-Type: multipart/mixed; boundary="%s"\r\n\r\n--%s\r\n%s\r\n--%s--'
            % (boundary, boundary, content, boundary)
        )
    return b"From: orders@shop.example\r\nSubject: Shipped\r\n" + content + b"\r\n"


def test_unparsable_email_fails_with_one_warning(
    engine: Engine,
    tmp_path: Path,
    shop_id: int,
    make_pipeline: Callable[..., Pipeline],
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipeline = make_pipeline(engine, _settings(tmp_path))
    message_id = _receive(engine, shop_id, _nested(2000))
    with caplog.at_level("WARNING", logger="bcctrack.pipeline"):
        _drain(pipeline)
    message = _message(engine, message_id)
    assert message.state == InboundState.FAILED
    assert message.attempts == 1
    records = [r for r in caplog.records if r.name == "bcctrack.pipeline"]
    assert [r.levelname for r in records] == ["WARNING"]
    assert records[0].exc_info is None
    assert str(message_id) in records[0].getMessage()

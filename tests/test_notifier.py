"""The notifier: rendering, sending through a real SMTP sink or the file outbox."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from sqlmodel import Session

from extractors.message import ParsedMessage
from extractors.model import Customer, Extraction, Kind, ShipmentResult
from mailhandler.inbound import Envelope, store_inbound
from mailhandler.notifier import Notifier
from mailhandler.outbound import FileBackend, SmtpBackend
from mailhandler.pipeline import Pipeline
from mailhandler.settings import Settings
from mailhandler.shops import add_shop
from mailhandler.store.models import Notification, NotificationState, utcnow
from support import free_port, smtp_sink

TRACKING = "1Z999AA10123456784"
LINK = f"https://www.ups.com/track?tracknum={TRACKING}"


class FixedExtractor:
    """Returns one shipping confirmation for the customer name it was given."""

    def __init__(self, customer_name: str = "Chris Customer") -> None:
        self.customer_name = customer_name

    def __call__(self, message: ParsedMessage) -> Extraction:
        return Extraction(
            kind=Kind.SHIPPING_CONFIRMATION,
            order_number="A-1001",
            shipments=[ShipmentResult(TRACKING, "ups", LINK)],
            customer=Customer("customer@example.com", self.customer_name),
            language=None,
        )


RAW = (
    b"From: Shop <orders@shop.example>\r\nTo: customer@example.com\r\n"
    b"Subject: shipped\r\nMessage-ID: <1@shop.example>\r\n\r\nbody\r\n"
)


def _queue_shipped(
    engine: Engine, tmp_path: Path, language: str = "de", name: str = "Chris Customer"
) -> Settings:
    settings = Settings(
        data_dir=tmp_path,
        intake_domain="bcc.test",
        retry_delay=0.001,
        notify_max_attempts=2,
    )
    shop = add_shop(engine, "acme", "Acme & Söhne", ["shop.example"], language=language)
    assert shop.id is not None
    store_inbound(engine, [shop.id], RAW, Envelope("b@shop.example", ["x"]))
    pipeline = Pipeline(engine, settings, extract=FixedExtractor(name))
    try:
        message_id = pipeline.claim_next()
        assert message_id is not None
        pipeline.process(message_id)
    finally:
        pipeline.close()
    return settings


def _send_all(notifier: Notifier) -> list[NotificationState | None]:
    async def run() -> list[NotificationState | None]:
        states = []
        while (notification_id := notifier.claim_next()) is not None:
            states.append(await notifier.send(notification_id))
        return states

    return asyncio.run(run())


def _notification(engine: Engine) -> Notification:
    with Session(engine) as session:
        return session.scalars(select(Notification)).one()


def test_shipped_update_reaches_relay_in_shop_language(
    engine: Engine, tmp_path: Path
) -> None:
    settings = _queue_shipped(engine, tmp_path, language="de")
    with smtp_sink() as (sink, port):
        notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", port))
        assert _send_all(notifier) == [NotificationState.SENT]
        received = sink.wait_for(1)
    assert len(received) == 1
    assert received[0].rcpt_tos == ["customer@example.com"]
    assert received[0].mail_from == "updates@bcc.test"
    email = received[0].message
    assert email["To"].addresses[0].addr_spec == "customer@example.com"
    assert email["From"].addresses[0].display_name == "Acme & Söhne"
    assert email["Subject"] == "Ihre Bestellung A-1001 bei Acme & Söhne wurde versandt"
    assert email["Content-Language"] == "de"
    text = email.get_body(("plain",)).get_content()
    html = email.get_body(("html",)).get_content()
    assert TRACKING in text
    assert LINK in text
    assert f'href="{LINK}"' in html
    assert "Acme &amp; Söhne" in html
    notification = _notification(engine)
    assert notification.state == NotificationState.SENT
    assert notification.sent_at is not None
    assert email["Message-ID"] == notification.message_id


def test_file_outbox_gets_one_eml(engine: Engine, tmp_path: Path) -> None:
    settings = _queue_shipped(engine, tmp_path, language="en")
    notifier = Notifier(engine, settings, FileBackend(settings.outbox_dir))
    _send_all(notifier)
    files = list(settings.outbox_dir.glob("*.eml"))
    assert len(files) == 1
    email = message_from_bytes(files[0].read_bytes(), policy=default)
    assert email["Subject"] == "Your order A-1001 from Acme & Söhne has shipped"
    assert not list(settings.outbox_dir.glob(".*.tmp"))


def test_unknown_language_falls_back_to_english(engine: Engine, tmp_path: Path) -> None:
    settings = _queue_shipped(engine, tmp_path, language="fi")
    notifier = Notifier(engine, settings, FileBackend(settings.outbox_dir))
    _send_all(notifier)
    raw = next(settings.outbox_dir.glob("*.eml")).read_bytes()
    assert message_from_bytes(raw, policy=default)["Content-Language"] == "en"


def test_display_name_cannot_inject_headers(engine: Engine, tmp_path: Path) -> None:
    hostile = "Eve\r\nBcc: victim@example.net\r\nX-Injected: yes"
    settings = _queue_shipped(engine, tmp_path, name=hostile)
    with smtp_sink() as (sink, port):
        _send_all(Notifier(engine, settings, SmtpBackend("127.0.0.1", port)))
        received = sink.wait_for(1)
    assert received[0].rcpt_tos == ["customer@example.com"]
    email = received[0].message
    assert email["X-Injected"] is None
    assert email["Bcc"] is None
    assert len(email["To"].addresses) == 1


def test_relay_down_retries_then_fails(engine: Engine, tmp_path: Path) -> None:
    settings = _queue_shipped(engine, tmp_path).model_copy(update={"retry_delay": 60})
    notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", free_port(), 2.0))
    assert _send_all(notifier) == [NotificationState.PENDING]
    pending = _notification(engine)
    assert pending.reason is not None
    assert "did not take the message" in pending.reason
    with Session(engine) as session, session.begin():
        session.execute(update(Notification).values(next_attempt_at=utcnow()))
    assert _send_all(notifier) == [NotificationState.FAILED]
    assert _notification(engine).attempts == 2


def test_old_event_suppressed_at_send_time(engine: Engine, tmp_path: Path) -> None:
    settings = _queue_shipped(engine, tmp_path)
    with Session(engine) as session, session.begin():
        session.execute(
            update(Notification).values(event_at=utcnow() - timedelta(days=30))
        )
    with smtp_sink() as (sink, port):
        notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", port))
        assert _send_all(notifier) == [NotificationState.SUPPRESSED]
        assert sink.wait_for(1, timeout=0.5) == []
    assert _notification(engine).reason == "event older than the maximum age"


@pytest.mark.parametrize("language", ["en", "de", "fr", "nl", "es", "it"])
def test_every_language_renders(engine: Engine, tmp_path: Path, language: str) -> None:
    settings = _queue_shipped(engine, tmp_path, language=language)
    _send_all(Notifier(engine, settings, FileBackend(settings.outbox_dir)))
    email = message_from_bytes(
        next(settings.outbox_dir.glob("*.eml")).read_bytes(), policy=default
    )
    assert email["Content-Language"] == language
    assert "A-1001" in email["Subject"]


def _crash_during_handover(engine: Engine) -> None:
    # What a process leaves behind when it dies while the relay takes the
    # email: the sending mark is committed, the lease has run out.
    with Session(engine) as session, session.begin():
        session.execute(
            update(Notification).values(
                sending_at=utcnow() - timedelta(minutes=10),
                lease_owner="dead-process",
                lease_expires_at=utcnow() - timedelta(minutes=1),
            )
        )


def test_relay_handover_interrupted_not_resent(engine: Engine, tmp_path: Path) -> None:
    settings = _queue_shipped(engine, tmp_path)
    _crash_during_handover(engine)
    with smtp_sink() as (sink, port):
        notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", port))
        assert _send_all(notifier) == [NotificationState.UNCONFIRMED]
        assert sink.wait_for(1, timeout=0.5) == []
    notification = _notification(engine)
    assert notification.reason is not None
    assert "not sent again" in notification.reason


def test_file_handover_interrupted_written_again(
    engine: Engine, tmp_path: Path
) -> None:
    settings = _queue_shipped(engine, tmp_path)
    _crash_during_handover(engine)
    notifier = Notifier(engine, settings, FileBackend(settings.outbox_dir))
    assert _send_all(notifier) == [NotificationState.SENT]
    assert len(list(settings.outbox_dir.glob("*.eml"))) == 1


def test_relay_rejection_clears_sending_mark(engine: Engine, tmp_path: Path) -> None:
    settings = _queue_shipped(engine, tmp_path).model_copy(update={"retry_delay": 60})
    notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", free_port(), 2.0))
    _send_all(notifier)
    notification = _notification(engine)
    assert notification.state == NotificationState.PENDING
    assert notification.sending_at is None


def _readdress(engine: Engine, address: str) -> None:
    with Session(engine) as session, session.begin():
        session.execute(update(Notification).values(recipient=address))


def test_internationalized_address_through_utf8_relay(
    engine: Engine, tmp_path: Path
) -> None:
    settings = _queue_shipped(engine, tmp_path)
    _readdress(engine, "zoë@exämple.com")
    with smtp_sink(smtputf8=True) as (sink, port):
        notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", port))
        assert _send_all(notifier) == [NotificationState.SENT]
        received = sink.wait_for(1)
    # aiosmtpd hands over the envelope address with undecoded bytes escaped.
    recipient = received[0].rcpt_tos[0].encode("utf-8", "surrogateescape")
    assert recipient.decode("utf-8") == "zoë@exämple.com"
    assert b"To: Chris Customer <zo\xc3\xab@ex\xc3\xa4mple.com>" in received[0].raw


def test_relay_without_smtputf8_fails_at_once(engine: Engine, tmp_path: Path) -> None:
    settings = _queue_shipped(engine, tmp_path)
    _readdress(engine, "zoë@exämple.com")
    with smtp_sink() as (_, port):
        notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", port))
        assert _send_all(notifier) == [NotificationState.FAILED]
    notification = _notification(engine)
    assert notification.attempts == 1
    assert notification.reason is not None
    assert "cannot carry this message" in notification.reason

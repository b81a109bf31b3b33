"""SMTP intake against the real listener: recipients, size, storage, dedup."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text, update
from sqlmodel import Session

from mailhandler.settings import Settings
from mailhandler.shops import add_shop, bcc_address
from mailhandler.store.models import InboundMessage, InboundState
from support import crlf, running_intake

SIZE_LIMIT = 200_000


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        intake_port=0,
        intake_domain="bcc.test",
        max_message_size=SIZE_LIMIT,
    )


def _message(
    message_id: str | None = "<order-1@shop.example>", body: str = "Hi"
) -> bytes:
    headers = "From: Shop <orders@shop.example>\r\nTo: Customer <c@example.com>\r\n"
    headers += "Subject: Your order\r\n"
    if message_id:
        headers += f"Message-ID: {message_id}\r\n"
    return (headers + "\r\n" + body + "\r\n").encode()


@pytest.fixture
def address(engine: Engine) -> str:
    shop = add_shop(engine, "acme", "Acme", ["shop.example"])
    return bcc_address(shop, "bcc.test")


def _stored(engine: Engine) -> list[InboundMessage]:
    with Session(engine) as session:
        return list(session.scalars(select(InboundMessage).order_by(InboundMessage.id)))


def test_unknown_recipient_rejected_at_rcpt(
    engine: Engine, tmp_path: Path, address: str
) -> None:
    with (
        running_intake(engine, _settings(tmp_path)) as port,
        smtplib.SMTP("127.0.0.1", port) as client,
    ):
        client.ehlo()
        client.mail("orders@shop.example")
        code, reply = client.rcpt("acme-notthetoken@bcc.test")
        assert code == 550
        assert reply.startswith(b"5.1.1")
        code, _ = client.rcpt(address)
        assert code == 250
    assert _stored(engine) == []


def test_reply_carries_id_of_committed_message(
    engine: Engine, tmp_path: Path, address: str
) -> None:
    raw = _message()
    with (
        running_intake(engine, _settings(tmp_path)) as port,
        smtplib.SMTP("127.0.0.1", port) as client,
    ):
        client.ehlo()
        client.mail("bounce@mail.shop.example")
        client.rcpt(address)
        code, reply = client.data(raw)
        # Read the store before closing the session: the row must already be
        # committed when the client sees 250.
        stored = _stored(engine)
    assert code == 250
    assert len(stored) == 1
    assert reply == f"2.0.0 queued as {stored[0].id}".encode()
    assert stored[0].raw == raw
    assert stored[0].mail_from == "bounce@mail.shop.example"
    assert stored[0].rcpt_tos == [address]
    assert stored[0].state == InboundState.QUEUED
    assert stored[0].message_id == "order-1@shop.example"


def test_size_advertised_and_enforced(
    engine: Engine, tmp_path: Path, address: str
) -> None:
    too_big = _message(body=("x" * 998 + "\r\n") * (SIZE_LIMIT // 1000 + 10))
    with (
        running_intake(engine, _settings(tmp_path)) as port,
        smtplib.SMTP("127.0.0.1", port) as client,
    ):
        client.ehlo()
        assert client.esmtp_features["size"] == str(SIZE_LIMIT)
        client.mail("orders@shop.example")
        client.rcpt(address)
        code, _ = client.data(too_big)
        assert code == 552
        # The session stays usable: a message within the limit goes through.
        client.mail("orders@shop.example")
        client.rcpt(address)
        code, _ = client.data(_message())
        assert code == 250
    assert len(_stored(engine)) == 1


def test_declared_size_over_limit_rejected_at_mail(
    engine: Engine, tmp_path: Path, address: str
) -> None:
    with (
        running_intake(engine, _settings(tmp_path)) as port,
        smtplib.SMTP("127.0.0.1", port) as client,
    ):
        client.ehlo()
        code, _ = client.mail("orders@shop.example", [f"SIZE={SIZE_LIMIT + 1}"])
        assert code == 552


def test_long_lines_accepted(engine: Engine, tmp_path: Path, address: str) -> None:
    line = "<td>" + "y" * 19_000 + "</td>"
    raw = _message(body=line)
    with (
        running_intake(engine, _settings(tmp_path)) as port,
        smtplib.SMTP("127.0.0.1", port) as client,
    ):
        code = client.sendmail("orders@shop.example", [address], raw)
    assert code == {}
    assert _stored(engine)[0].raw == raw


def test_corpus_email_with_19kb_line_accepted(
    engine: Engine, tmp_path: Path, address: str, corpus_dir: Path
) -> None:
    raw = crlf((corpus_dir / "real" / "informed_delivery.eml").read_bytes())
    assert max(len(line) for line in raw.split(b"\r\n")) > 19_000
    with (
        running_intake(engine, _settings(tmp_path)) as port,
        smtplib.SMTP("127.0.0.1", port) as client,
    ):
        client.sendmail("orders@shop.example", [address], raw)
    assert _stored(engine)[0].raw == raw


def _send(port: int, address: str, raw: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.ehlo()
        client.mail("orders@shop.example")
        client.rcpt(address)
        return client.data(raw)


def test_retry_stored_once(engine: Engine, tmp_path: Path, address: str) -> None:
    with running_intake(engine, _settings(tmp_path)) as port:
        replies = [_send(port, address, _message(body="copy")) for _ in range(3)]
    assert replies[0] == replies[1] == replies[2]
    assert replies[0][0] == 250
    assert len(_stored(engine)) == 1


def test_same_message_id_after_processing_is_duplicate(
    engine: Engine, tmp_path: Path, address: str
) -> None:
    with running_intake(engine, _settings(tmp_path)) as port:
        first = _send(port, address, _message(body="first copy"))
        with Session(engine) as session, session.begin():
            session.execute(update(InboundMessage).values(state=InboundState.PROCESSED))
        resent = _send(port, address, _message(body="resent with a new date"))
    assert first == resent
    stored = _stored(engine)
    assert len(stored) == 1
    assert b"first copy" in stored[0].raw


def test_unverified_copy_keeps_other_variant(
    engine: Engine, tmp_path: Path, address: str
) -> None:
    # A forged message with a copied Message-ID arrives first; the shop's own
    # message must still be stored, or it would never be processed.
    with running_intake(engine, _settings(tmp_path)) as port:
        forged = _send(port, address, _message(body="forged copy"))
        genuine = _send(port, address, _message(body="genuine copy"))
        again = _send(port, address, _message(body="genuine copy"))
    assert forged != genuine
    assert genuine == again
    stored = _stored(engine)
    assert [m.raw.endswith(b"forged copy\r\n") for m in stored] == [True, False]
    assert stored[1].message_id == stored[0].message_id


def test_without_message_id_same_bytes_deduplicated(
    engine: Engine, tmp_path: Path, address: str
) -> None:
    with (
        running_intake(engine, _settings(tmp_path)) as port,
        smtplib.SMTP("127.0.0.1", port) as client,
    ):
        for body in ("one", "one", "two"):
            client.sendmail("orders@shop.example", [address], _message(None, body))
    assert [b"one" in m.raw for m in _stored(engine)] == [True, False]


def test_two_shops_each_get_a_copy(
    engine: Engine, tmp_path: Path, address: str
) -> None:
    other = bcc_address(
        add_shop(engine, "other", "Other", ["shop.example"]), "bcc.test"
    )
    with (
        running_intake(engine, _settings(tmp_path)) as port,
        smtplib.SMTP("127.0.0.1", port) as client,
    ):
        client.ehlo()
        client.mail("orders@shop.example")
        client.rcpt(address)
        client.rcpt(other)
        code, reply = client.data(_message())
    stored = _stored(engine)
    assert code == 250
    assert sorted(m.shop_id for m in stored) == sorted({m.shop_id for m in stored})
    assert len(stored) == 2
    assert reply == f"2.0.0 queued as {stored[0].id} {stored[1].id}".encode()


def test_store_failure_answers_451_and_keeps_nothing(
    engine: Engine, tmp_path: Path, address: str
) -> None:
    with (
        running_intake(engine, _settings(tmp_path)) as port,
        smtplib.SMTP("127.0.0.1", port) as client,
    ):
        client.ehlo()
        client.mail("orders@shop.example")
        client.rcpt(address)
        # Break the store between RCPT and DATA.
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE inbound_message RENAME TO broken"))
        code, reply = client.data(_message())
    assert code == 451
    assert reply.startswith(b"4.3.0")
    with engine.begin() as connection:
        count = connection.execute(text("SELECT count(*) FROM broken")).scalar()
    assert count == 0


def test_smtputf8_address_and_body_accepted(
    engine: Engine, tmp_path: Path, address: str
) -> None:
    raw = (
        "From: Bäckerei <bestellung@shop.example>\r\nTo: Jürgen <jürgen@example.de>\r\n"
        "Subject: Bestellung\r\nMessage-ID: <ü@shop.example>\r\n\r\nGrüße\r\n"
    ).encode()
    with (
        running_intake(engine, _settings(tmp_path)) as port,
        smtplib.SMTP("127.0.0.1", port) as client,
    ):
        client.ehlo()
        assert client.has_extn("smtputf8")
        client.sendmail("bestellung@bäckerei.example", [address], raw, ["SMTPUTF8"])
    stored = _stored(engine)
    assert stored[0].raw == raw
    assert stored[0].mail_from == "bestellung@bäckerei.example"


def test_postmaster_accepted_into_folder(engine: Engine, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    raw = _message("<abuse-report-1@isp.example>")
    with (
        running_intake(engine, settings) as port,
        smtplib.SMTP("127.0.0.1", port) as client,
    ):
        client.ehlo()
        client.mail("abuse@isp.example")
        rcpt_code, _ = client.rcpt("postmaster@bcc.test")
        code, reply = client.data(raw)
        client.mail("abuse@isp.example")
        bare_code, _ = client.rcpt("Postmaster")
        client.rset()
        client.mail("abuse@isp.example")
        other_code, _ = client.rcpt("postmaster@other.example")
    assert rcpt_code == 250
    assert code == 250
    assert reply.startswith(b"2.0.0 queued as postmaster/")
    assert bare_code == 250
    assert other_code == 550
    files = list(settings.postmaster_dir.glob("*.eml"))
    assert [f"postmaster/{f.name}" for f in files] == [
        reply.decode().removeprefix("2.0.0 queued as ")
    ]
    content = files[0].read_bytes()
    assert content.startswith(
        b"Return-Path: <abuse@isp.example>\r\nDelivered-To: postmaster@bcc.test\r\n"
    )
    assert b"abuse-report-1@isp.example" in content
    # It is no shop's: nothing in the pipeline's queue, so no customer email.
    assert _stored(engine) == []


def test_postmaster_beside_shop_address(
    engine: Engine, tmp_path: Path, address: str
) -> None:
    settings = _settings(tmp_path)
    with (
        running_intake(engine, settings) as port,
        smtplib.SMTP("127.0.0.1", port) as client,
    ):
        client.ehlo()
        client.mail("orders@shop.example")
        client.rcpt("POSTMASTER@BCC.TEST")
        client.rcpt(address)
        code, reply = client.data(_message())
    (stored,) = _stored(engine)
    (written,) = settings.postmaster_dir.glob("*.eml")
    assert code == 250
    assert reply.decode() == f"2.0.0 queued as {stored.id} postmaster/{written.name}"
    assert stored.shop_id is not None

"""Regression tests for defects found by trying bcctrack as an admin and operator."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import time
from datetime import timedelta
from email import message_from_bytes
from email.policy import default
from pathlib import Path

from sqlalchemy import Engine, select
from sqlmodel import Session

from extractors.model import FieldName
from mailhandler.inbound import Envelope, store_inbound
from mailhandler.notifier import Notifier
from mailhandler.optout import is_opted_out, make_token, opt_out_by_token, signing_key
from mailhandler.outbound import FileBackend
from mailhandler.pipeline import Pipeline
from mailhandler.rules import RuleBook, activate
from mailhandler.sender import check_sender_dkim
from mailhandler.settings import Settings
from mailhandler.shops import (
    add_shop,
    bcc_address,
    find_recipient,
    remove_shop,
    rotate_token,
)
from mailhandler.store.models import InboundMessage, Notification
from support import running_intake


def _shipping_email(to_header: bytes, order: str = "A-1001") -> bytes:
    return (
        b"From: Shop <orders@shop.example>\r\nTo: " + to_header + b"\r\n"
        b"Subject: Your order " + order.encode() + b" has shipped\r\n"
        b"Message-ID: <" + order.encode() + b"@shop.example>\r\n\r\n"
        b"Order number: " + order.encode() + b"\r\n"
        b"Tracking number: 1Z999AA10123456784\r\n"
    )


def _process_all(engine: Engine, settings: Settings) -> None:
    pipeline = Pipeline(engine, settings)
    try:
        while (message_id := pipeline.claim_next()) is not None:
            pipeline.process(message_id)
    finally:
        pipeline.close()


def _send_all(engine: Engine, settings: Settings) -> None:
    notifier = Notifier(engine, settings, FileBackend(settings.outbox_dir))

    async def run() -> None:
        while (notification_id := notifier.claim_next()) is not None:
            await notifier.send(notification_id)

    asyncio.run(run())


def test_encoded_word_name_cannot_inject_headers(
    engine: Engine, tmp_path: Path
) -> None:
    # The display name decodes to "Bob\r\nBcc: victim@evil.example, x". The
    # extractor keeps it encoded, and serializing the update decoded it into
    # a real line break on Python 3.11.7, splitting To: into To: and Bcc:.
    settings = Settings(data_dir=tmp_path, intake_domain="bcc.test")
    shop = add_shop(engine, "acme", "Acme", ["shop.example"])
    assert shop.id is not None
    hostile = (
        b"=?utf-8?q?Bob=0D=0ABcc=3A_victim=40evil=2Eexample=2C_x?= <bob@example.com>"
    )
    raw = _shipping_email(hostile)
    store_inbound(engine, [shop.id], raw, Envelope("orders@shop.example", ["x"]))
    _process_all(engine, settings)
    _send_all(engine, settings)

    files = list(settings.outbox_dir.glob("*.eml"))
    assert len(files) == 1
    sent = files[0].read_bytes()
    email = message_from_bytes(sent, policy=default)
    assert b"\nBcc:" not in sent
    assert email["Bcc"] is None
    assert [a.addr_spec for a in email["To"].addresses] == ["bob@example.com"]


def test_purged_shop_token_spares_other_customer(
    engine: Engine, tmp_path: Path
) -> None:
    # On SQLite, deleting the rows with the highest ids lets the next insert
    # take the same id again. An opt-out token names a notification id, so a
    # token from an update of a purged shop then opted out another shop's
    # customer; the update's Message-ID and outbox file name repeated as well.
    settings = Settings(data_dir=tmp_path, intake_domain="bcc.test")
    trial = add_shop(engine, "trial", "Trial", ["trial.example"])
    assert trial.id is not None
    raw = _shipping_email(b"Carol <carol@example.com>", order="T-1")
    raw = raw.replace(b"shop.example", b"trial.example")
    store_inbound(engine, [trial.id], raw, Envelope("orders@trial.example", ["x"]))
    _process_all(engine, settings)
    with Session(engine) as session:
        old_notification = session.scalars(select(Notification)).one()
    assert old_notification.id is not None
    old_token = make_token(signing_key(settings), old_notification.id)
    remove_shop(engine, "trial", purge=True)

    acme = add_shop(engine, "acme", "Acme", ["shop.example"])
    assert acme.id is not None
    raw = _shipping_email(b"Bob <bob@example.com>", order="A-2001")
    store_inbound(engine, [acme.id], raw, Envelope("orders@shop.example", ["x"]))
    _process_all(engine, settings)
    with Session(engine) as session:
        new_notification = session.scalars(select(Notification)).one()

    assert new_notification.id != old_notification.id
    assert not opt_out_by_token(engine, settings, old_token, "mailto")
    with Session(engine) as session:
        assert not is_opted_out(session, acme.id, "bob@example.com")


GOOD_RULES = """
[order_number]
regex = 'Vorgang (?P<value>\\d{4}/MK/\\d{4})'
"""


def test_undecodable_rule_file_keeps_last_good(tmp_path: Path) -> None:
    book = RuleBook(tmp_path, timeout=0.2)
    active = book.active_path("moebel")
    active.write_text(GOOD_RULES, encoding="utf-8")
    assert book.get("moebel") is not None

    # Binary garbage, and nesting deeper than tomllib's recursion: both raised
    # out of RuleBook.get, so every message of the shop failed.
    for content in (
        b"[order_number]\nselector = 'td'\n\xff\xfe\x00\x80\n",
        b"x = " + b"[" * 3000 + b"]" * 3000 + b"\n",
    ):
        active.write_bytes(content)
        rules = book.get("moebel")
        assert rules is not None
        assert FieldName.ORDER_NUMBER in rules.fields
        assert book.rejection("moebel") is not None


def test_invalid_rule_file_after_restart(tmp_path: Path) -> None:
    # The last good rules lived only in the process's memory. After a
    # restart an invalid active file left the shop with no rules at all,
    # while 'bcctrack status' said that older rules stay in force.
    draft = tmp_path / "moebel.draft.toml"
    draft.write_text(GOOD_RULES, encoding="utf-8")
    first = RuleBook(tmp_path, timeout=0.2)
    activate(first, "moebel", draft)
    assert first.get("moebel") is not None

    first.active_path("moebel").write_text("[order_number]\nregex = '(a'\n")
    restarted = RuleBook(tmp_path, timeout=0.2)
    rules = restarted.get("moebel")
    assert rules is not None
    assert FieldName.ORDER_NUMBER in rules.fields


def test_quarantined_copy_keeps_genuine_out(engine: Engine, tmp_path: Path) -> None:
    # Deduplication by Message-ID ignores the sender check: an unverified
    # copy that arrives first is quarantined, and the genuine email with the
    # same Message-ID is then answered 250 and dropped as a duplicate. So a
    # forger who guesses a shop's Message-ID keeps its real email out.
    settings = Settings(data_dir=tmp_path, intake_domain="bcc.test")
    shop = add_shop(engine, "acme", "Acme", ["shop.example"])
    assert shop.id is not None
    genuine = _shipping_email(b"Bob <bob@example.com>", order="A-3001")
    forged = genuine.replace(
        b"From: Shop <orders@shop.example>", b"From: x@evil.example"
    )
    store_inbound(engine, [shop.id], forged, Envelope("x@evil.example", ["x"]))
    store_inbound(engine, [shop.id], genuine, Envelope("orders@shop.example", ["x"]))
    _process_all(engine, settings)

    with Session(engine) as session:
        states = sorted(m.state for m in session.scalars(select(InboundMessage)))
        notifications = list(session.scalars(select(Notification)))
    assert "quarantined" in states
    assert "processed" in states
    assert [n.recipient for n in notifications] == ["bob@example.com"]


def test_dkim_lookups_bounded_per_message() -> None:
    # Each DKIM-Signature header cost two key lookups (verify, then the
    # failure detail), with a 5 s DNS timeout each, whatever its d= domain.
    # 300 signatures by foreign domains in a 30 KB message meant 600 lookups,
    # up to 50 minutes of one pipeline worker outside the processing limit.
    lookups: list[bytes] = []

    def resolver(name: bytes, timeout: float = 5) -> bytes | None:
        lookups.append(name)
        return None

    signatures = b"".join(
        b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; "
        b"d=d%d.attacker.example; s=s; h=from; bh=AAAA; b=AAAA\r\n" % number
        for number in range(300)
    )
    raw = signatures + (
        b"From: Shop <orders@shop.example>\r\nTo: x@example.com\r\n"
        b"Subject: shipped\r\n\r\nbody\r\n"
    )
    check = check_sender_dkim(raw, ["shop.example"], resolver)

    assert not check.verified
    assert len(lookups) <= 10


def test_second_rotation_keeps_first_grace(engine: Engine) -> None:
    # Only one previous token is kept: rotating again within the grace
    # period ended the first old address at once, so mail systems not yet
    # switched over got 550 days before their grace period ended.
    first = bcc_address(add_shop(engine, "acme", "Acme", ["shop.example"]), "bcc.test")
    second = bcc_address(rotate_token(engine, "acme", timedelta(days=7)), "bcc.test")
    third = bcc_address(rotate_token(engine, "acme", timedelta(days=7)), "bcc.test")

    assert find_recipient(engine, third, "bcc.test") is not None
    assert find_recipient(engine, second, "bcc.test") is not None
    assert find_recipient(engine, first, "bcc.test") is not None


def test_one_client_cannot_hold_every_transfer(engine: Engine, tmp_path: Path) -> None:
    # One client address may open more sessions than there are transfer
    # slots, and a DATA transfer that sends a byte within every
    # smtp_data_timeout never ends. So one client held every slot and all
    # other senders got 451 4.3.2 for as long as it liked. A valid opt-out
    # address, which every customer has, is enough to reach DATA.
    settings = Settings(
        data_dir=tmp_path,
        intake_port=0,
        intake_domain="bcc.test",
        max_concurrent_transfers=3,
    )
    address = bcc_address(
        add_shop(engine, "acme", "Acme", ["shop.example"]), "bcc.test"
    )
    with running_intake(engine, settings) as port:
        stalled = []
        for _ in range(settings.max_concurrent_transfers):
            client = socket.create_connection(
                ("127.0.0.1", port), timeout=10, source_address=("127.0.0.2", 0)
            )
            client.recv(1024)
            for command in (
                b"EHLO slow.example\r\n",
                b"MAIL FROM:<x@slow.example>\r\n",
                b"RCPT TO:<" + address.encode() + b">\r\n",
                b"DATA\r\n",
            ):
                client.sendall(command)
                time.sleep(0.1)
                client.recv(1024)
            client.sendall(b"S")
            stalled.append(client)

        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                smtp.ehlo()
                smtp.mail("orders@shop.example")
                smtp.rcpt(address)
                smtp.putcmd("data")
                code, reply = smtp.getreply()
                if code == 354:
                    smtp.send(_shipping_email(b"bob@example.com") + b".\r\n")
                    code, reply = smtp.getreply()
        finally:
            for client in stalled:
                client.close()

    assert code == 250, reply


def test_nul_in_display_name_processed(engine: Engine, tmp_path: Path) -> None:
    # PostgreSQL text columns reject NUL. A stray NUL in the customer's
    # display name made the order insert fail on every attempt, so the
    # message ended failed on PostgreSQL while SQLite processed it.
    settings = Settings(data_dir=tmp_path, intake_domain="bcc.test", retry_delay=0.001)
    shop = add_shop(engine, "acme", "Acme", ["shop.example"])
    assert shop.id is not None
    raw = _shipping_email(b"Bob\x00 <bob@example.com>")
    store_inbound(engine, [shop.id], raw, Envelope("orders@shop.example", ["x"]))
    _process_all(engine, settings)

    with Session(engine) as session:
        message = session.scalars(select(InboundMessage)).one()
    assert message.state == "processed", message.reason

"""Regression tests for defects found by trying bcctrack as an admin and operator."""

from __future__ import annotations

import asyncio
from email import message_from_bytes
from email.policy import default
from pathlib import Path

from sqlalchemy import Engine

from mailhandler.inbound import Envelope, store_inbound
from mailhandler.notifier import Notifier
from mailhandler.outbound import FileBackend
from mailhandler.pipeline import Pipeline
from mailhandler.settings import Settings
from mailhandler.shops import add_shop


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

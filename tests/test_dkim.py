"""Sender verification by DKIM, offline, with keys the tests generate."""

from __future__ import annotations

import base64
import smtplib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailhandler.inbound import Envelope, store_inbound
from mailhandler.pipeline import Pipeline
from mailhandler.settings import Settings
from mailhandler.shops import ShopChanges, add_shop, bcc_address, update_shop
from mailhandler.store.models import InboundMessage, InboundState, Notification
from support import running_intake

SELECTOR = b"mail2026"


class KeyRing:
    """DKIM keys by signing domain, answering DNS TXT lookups for them."""

    def __init__(self) -> None:
        self.private: dict[str, bytes] = {}
        self.records: dict[bytes, bytes] = {}

    def add(self, domain: str) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private[domain] = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        name = SELECTOR + b"._domainkey." + domain.encode() + b"."
        self.records[name] = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def resolve(self, name: bytes, timeout: float = 5) -> bytes | None:
        return self.records.get(name if name.endswith(b".") else name + b".")

    def sign(self, raw: bytes, domain: str) -> bytes:
        signature: bytes = dkim.sign(
            raw,
            SELECTOR,
            domain.encode(),
            self.private[domain],
            include_headers=[b"from", b"to", b"subject", b"message-id"],
        )
        return signature + raw


@pytest.fixture(scope="module")
def keys() -> KeyRing:
    ring = KeyRing()
    for domain in ("shop.example", "mail.shop.example", "evil.example"):
        ring.add(domain)
    return ring


def _email(sender: str = "orders@shop.example", subject_id: int = 1) -> bytes:
    return (
        f"From: Shop <{sender}>\r\nTo: Chris <chris@example.com>\r\n"
        f"Subject: Your order {1000 + subject_id} has shipped\r\n"
        f"Message-ID: <dkim-{subject_id}@shop.example>\r\n\r\n"
        f"Order number: {1000 + subject_id}\r\n"
        "Tracking number: 1Z999AA10123456784\r\n"
    ).encode()


@pytest.fixture
def dkim_shop(engine: Engine) -> int:
    add_shop(engine, "acme", "Acme", ["shop.example"])
    shop = update_shop(engine, "acme", ShopChanges(sender_policy="dkim"))
    assert shop.id is not None
    return shop.id


@pytest.fixture
def process(
    engine: Engine, tmp_path: Path, keys: KeyRing, dkim_shop: int
) -> Iterator[Callable[[bytes], InboundMessage]]:
    pipeline = Pipeline(engine, Settings(data_dir=tmp_path), resolver=keys.resolve)

    def run(raw: bytes) -> InboundMessage:
        stored = store_inbound(engine, [dkim_shop], raw, Envelope("b@shop.example", []))
        assert pipeline.claim(stored[0].id)
        pipeline.process(stored[0].id)
        with Session(engine) as session:
            message = session.get(InboundMessage, stored[0].id)
            assert message is not None
            return message

    yield run
    pipeline.close()


def _notifications(engine: Engine) -> list[Notification]:
    with Session(engine) as session:
        return list(session.scalars(select(Notification)))


def test_signed_by_shop_domain_processed(
    engine: Engine, keys: KeyRing, process: Callable[[bytes], InboundMessage]
) -> None:
    message = process(keys.sign(_email(), "shop.example"))
    assert message.state == InboundState.PROCESSED
    assert message.sender_check == "dkim"
    assert message.sender_verified is True
    assert message.sender_detail == "valid DKIM signature by shop.example"
    assert len(_notifications(engine)) == 1


def test_signed_by_subdomain_processed(
    keys: KeyRing, process: Callable[[bytes], InboundMessage]
) -> None:
    message = process(keys.sign(_email(), "mail.shop.example"))
    assert message.state == InboundState.PROCESSED


@pytest.mark.parametrize(
    ("case", "detail"),
    [
        ("other domain", "signature by evil.example: not a sender domain"),
        ("body altered", "signature by shop.example: body hash mismatch"),
        ("unsigned", "no DKIM signature"),
        (
            "unknown key",
            "signature by shop.example does not verify (the key is missing",
        ),
    ],
)
def test_unverified_quarantined_and_silent(
    engine: Engine,
    keys: KeyRing,
    process: Callable[[bytes], InboundMessage],
    case: str,
    detail: str,
) -> None:
    raw = _email()
    if case == "other domain":
        raw = keys.sign(raw, "evil.example")
    elif case == "body altered":
        raw = keys.sign(raw, "shop.example").replace(
            b"1Z999AA10123456784", b"1Z999AA10123456791"
        )
    elif case == "unknown key":
        raw = keys.sign(raw, "shop.example").replace(b"s=mail2026", b"s=missing")
    message = process(raw)
    assert message.state == InboundState.QUARANTINED
    assert message.sender_verified is False
    assert message.sender_detail is not None
    assert detail in message.sender_detail
    assert _notifications(engine) == []


def test_domain_policy_ignores_signatures(
    engine: Engine, tmp_path: Path, keys: KeyRing
) -> None:
    shop = add_shop(engine, "plain", "Plain", ["shop.example"])
    assert shop.id is not None
    pipeline = Pipeline(engine, Settings(data_dir=tmp_path), resolver=keys.resolve)
    try:
        stored = store_inbound(
            engine, [shop.id], _email(), Envelope("b@shop.example", [])
        )
        assert pipeline.claim(stored[0].id)
        outcome = pipeline.process(stored[0].id)
    finally:
        pipeline.close()
    assert outcome is not None
    assert outcome.state == InboundState.PROCESSED


def test_reject_policy_refuses_unsigned_at_smtp(
    engine: Engine, tmp_path: Path, keys: KeyRing, dkim_shop: int
) -> None:
    shop = update_shop(engine, "acme", ShopChanges(unverified_policy="reject"))
    address = bcc_address(shop, "bcc.test")
    settings = Settings(data_dir=tmp_path, intake_port=0, intake_domain="bcc.test")
    with (
        running_intake(engine, settings, resolver=keys.resolve) as port,
        smtplib.SMTP("127.0.0.1", port) as client,
    ):
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("b@shop.example", [address], _email(subject_id=2))
        signed = keys.sign(_email(subject_id=3), "shop.example")
        assert client.sendmail("b@shop.example", [address], signed) == {}
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error.startswith(b"5.7.1 Sender not verified")
    with Session(engine) as session:
        stored: list[Any] = list(session.scalars(select(InboundMessage)))
    assert [m.message_id for m in stored] == ["dkim-3@shop.example"]


def test_keys_file_checks_offline(keys: KeyRing, tmp_path: Path) -> None:
    from mailhandler.sender import check_sender_dkim, default_resolver

    keys_file = tmp_path / "dkim-keys.txt"
    lines = [
        f"{name.decode()} {record.decode()}" for name, record in keys.records.items()
    ]
    keys_file.write_text("# test keys\n" + "\n".join(lines) + "\n")
    resolver = default_resolver(keys_file)
    check = check_sender_dkim(
        keys.sign(_email(), "shop.example"), ["shop.example"], resolver
    )
    assert check.verified

"""Shop management: changes, token rotation, removal, and a shop's own relay."""

from __future__ import annotations

import asyncio
import json
import smtplib
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from extractors.message import ParsedMessage
from extractors.model import Customer, Extraction, Kind, ShipmentResult
from mailhandler.inbound import Envelope, store_inbound
from mailhandler.notifier import Notifier
from mailhandler.outbound import SmtpBackend
from mailhandler.pipeline import Pipeline
from mailhandler.settings import Settings
from mailhandler.shops import (
    ShopChanges,
    ShopError,
    add_shop,
    bcc_address,
    find_recipient,
    get_shop,
    list_shops,
    remove_shop,
    rotate_token,
    update_shop,
)
from mailhandler.store.models import InboundMessage, Order, Shop, utcnow
from support import cli_environment, run_cli, running_intake, smtp_sink


def test_update_changes_only_given_values(engine: Engine) -> None:
    add_shop(engine, "acme", "Acme", ["acme.example"], language="de")
    shop = update_shop(
        engine,
        "acme",
        ShopChanges(
            name="Acme Outdoor",
            add_domains=("mail.acme-outdoor.example",),
            brand_color="#ff6600",
            logo_url="https://cdn.acme.example/logo.png",
            outbound="smtp://relay.acme.example:587",
            sender_policy="dkim",
        ),
    )
    assert shop.name == "Acme Outdoor"
    assert shop.sender_domains == ["acme.example", "mail.acme-outdoor.example"]
    assert shop.language == "de"
    assert shop.brand_color == "#ff6600"
    assert shop.outbound == "smtp://relay.acme.example:587"
    assert shop.sender_policy == "dkim"
    assert shop.unverified_policy == "quarantine"

    cleared = update_shop(
        engine, "acme", ShopChanges(outbound="", remove_domains=("acme.example",))
    )
    assert cleared.outbound is None
    assert cleared.sender_domains == ["mail.acme-outdoor.example"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (ShopChanges(remove_domains=("acme.example",)), "at least one sender domain"),
        (ShopChanges(remove_domains=("other.example",)), "not found"),
        (ShopChanges(brand_color="orange"), "invalid brand colour"),
        (ShopChanges(logo_url="http://plain.example/x.png"), "invalid logo URL"),
        (ShopChanges(outbound="relay.example"), "invalid outbound"),
        (ShopChanges(sender_policy="spf"), "invalid sender policy"),
        (ShopChanges(unverified_policy="drop"), "invalid unverified policy"),
        (ShopChanges(language="deutsch"), "invalid language"),
    ],
)
def test_invalid_update_rejected_unchanged(
    engine: Engine, changes: ShopChanges, message: str
) -> None:
    add_shop(engine, "acme", "Acme", ["acme.example"])
    with pytest.raises(ShopError, match=message):
        update_shop(engine, "acme", changes)
    shop = get_shop(engine, "acme")
    assert shop.sender_domains == ["acme.example"]
    assert shop.brand_color == "#1f2937"


def _end_grace(engine: Engine) -> None:
    # What the clock does after the grace period: every retired token expires.
    with Session(engine) as session, session.begin():
        for shop in session.scalars(select(Shop)):
            past = (utcnow() - timedelta(seconds=1)).isoformat()
            shop.retired_tokens = [
                {**entry, "expires_at": past} for entry in shop.retired_tokens
            ]
            session.add(shop)


def test_rotated_token_grace_period(engine: Engine) -> None:
    old = bcc_address(add_shop(engine, "acme", "Acme", ["acme.example"]), "bcc.test")
    new = bcc_address(rotate_token(engine, "acme", timedelta(days=7)), "bcc.test")
    assert new != old
    assert find_recipient(engine, old, "bcc.test") is not None
    assert find_recipient(engine, new, "bcc.test") is not None

    _end_grace(engine)
    assert find_recipient(engine, old, "bcc.test") is None
    assert find_recipient(engine, new, "bcc.test") is not None


def test_rotation_without_grace_stops_old_address(engine: Engine) -> None:
    old = bcc_address(add_shop(engine, "acme", "Acme", ["acme.example"]), "bcc.test")
    rotate_token(engine, "acme", timedelta(0))
    assert find_recipient(engine, old, "bcc.test") is None


def test_old_address_over_smtp(engine: Engine, tmp_path: Path) -> None:
    old = bcc_address(add_shop(engine, "acme", "Acme", ["acme.example"]), "bcc.test")
    rotate_token(engine, "acme", timedelta(hours=1))
    settings = Settings(data_dir=tmp_path, intake_port=0, intake_domain="bcc.test")
    raw = b"From: o@acme.example\r\nSubject: x\r\nMessage-ID: <r1@acme.example>\r\n\r\n"
    with running_intake(engine, settings) as port:
        with smtplib.SMTP("127.0.0.1", port) as client:
            assert client.sendmail("o@acme.example", [old], raw) == {}
        _end_grace(engine)
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.ehlo()
            client.mail("o@acme.example")
            code, reply = client.rcpt(old)
    assert code == 550
    assert reply.startswith(b"5.1.1")


def test_removed_shop_rejects_mail_keeps_data(engine: Engine) -> None:
    shop = add_shop(engine, "acme", "Acme", ["acme.example"])
    assert shop.id is not None
    store_inbound(
        engine, [shop.id], b"Subject: x\r\n\r\nx", Envelope("a@acme.example", [])
    )
    remove_shop(engine, "acme")
    assert find_recipient(engine, bcc_address(shop, "bcc.test"), "bcc.test") is None
    assert list_shops(engine) == []
    assert [s.slug for s in list_shops(engine, include_removed=True)] == ["acme"]
    with Session(engine) as session:
        assert len(list(session.scalars(select(InboundMessage)))) == 1


def test_purge_deletes_everything(engine: Engine, tmp_path: Path) -> None:
    shop = add_shop(engine, "acme", "Acme", ["acme.example"])
    other = add_shop(engine, "other", "Other", ["other.example"])
    assert shop.id is not None and other.id is not None
    for shop_id, domain in ((shop.id, "acme.example"), (other.id, "other.example")):
        raw = (
            f"From: o@{domain}\r\nTo: c@example.com\r\nSubject: Order 1 shipped\r\n"
            "\r\nOrder number: 1\r\nTracking number: 1Z999AA10123456784\r\n"
        ).encode()
        store_inbound(engine, [shop_id], raw, Envelope(f"o@{domain}", []))
    pipeline = Pipeline(engine, Settings(data_dir=tmp_path))
    try:
        while (message_id := pipeline.claim_next()) is not None:
            pipeline.process(message_id)
    finally:
        pipeline.close()
    remove_shop(engine, "acme", purge=True)
    with Session(engine) as session:
        assert [s.slug for s in session.scalars(select(Shop))] == ["other"]
        assert {o.shop_id for o in session.scalars(select(Order))} == {other.id}
        assert {m.shop_id for m in session.scalars(select(InboundMessage))} == {
            other.id
        }


class OneShipment:
    """Returns one shipping confirmation for the To: address."""

    def __call__(self, message: ParsedMessage) -> Extraction:
        return Extraction(
            kind=Kind.SHIPPING_CONFIRMATION,
            order_number=message.subject,
            shipments=[ShipmentResult(f"1Z{message.subject}", "ups", None)],
            customer=Customer(message.to[0].email, None),
        )


def test_shop_relay_used_for_its_updates(engine: Engine, tmp_path: Path) -> None:
    with (
        smtp_sink() as (default_sink, default_port),
        smtp_sink() as (shop_sink, shop_port),
    ):
        acme = add_shop(engine, "acme", "Acme", ["acme.example"])
        plain = add_shop(engine, "plain", "Plain", ["plain.example"])
        update_shop(
            engine, "acme", ShopChanges(outbound=f"smtp://127.0.0.1:{shop_port}")
        )
        settings = Settings(data_dir=tmp_path)
        for shop, sender in ((acme, "o@acme.example"), (plain, "o@plain.example")):
            assert shop.id is not None
            raw = (
                f"From: {sender}\r\nTo: c@example.com\r\nSubject: {shop.slug}\r\n\r\nx"
            )
            store_inbound(engine, [shop.id], raw.encode(), Envelope(sender, []))
        pipeline = Pipeline(engine, settings, extract=OneShipment())
        try:
            while (message_id := pipeline.claim_next()) is not None:
                pipeline.process(message_id)
        finally:
            pipeline.close()
        notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", default_port))

        async def send_all() -> None:
            while (notification_id := notifier.claim_next()) is not None:
                await notifier.send(notification_id)

        asyncio.run(send_all())
        assert len(shop_sink.wait_for(1)) == 1
        assert len(default_sink.wait_for(1)) == 1
    assert shop_sink.received[0].message["From"].addresses[0].display_name == "Acme"
    assert default_sink.received[0].message["From"].addresses[0].display_name == "Plain"


def test_shop_commands_round_trip(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path, intake_domain="bcc.test")
    first = run_cli(
        environment,
        "shop",
        "add",
        "acme",
        "--name",
        "Acme",
        "--sender-domain",
        "acme.example",
    ).stdout.splitlines()[0]
    shown = json.loads(
        run_cli(
            environment,
            "shop",
            "update",
            "acme",
            "--brand-color",
            "#123456",
            "--sender-policy",
            "dkim",
            "--unverified",
            "reject",
        ).stdout
    )
    assert shown["brand_color"] == "#123456"
    assert shown["sender_policy"] == "dkim"
    assert shown["unverified_policy"] == "reject"
    rotated = run_cli(
        environment, "shop", "rotate-token", "acme", "--grace-hours", "24"
    )
    second = rotated.stdout.splitlines()[0]
    assert second != first
    assert f"{first} works until" in rotated.stderr
    details = json.loads(run_cli(environment, "shop", "show", "acme").stdout)
    assert details["address"] == second
    assert [old["address"] for old in details["previous_addresses"]] == [first]
    run_cli(environment, "shop", "remove", "acme", "--yes")
    assert run_cli(environment, "shop", "list").stdout == ""
    removed = json.loads(run_cli(environment, "shop", "list", "--all", "--json").stdout)
    assert removed["removed"] is True


def test_remove_unknown_shop_asks_nothing(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path / "data")
    result = run_cli(environment, "shop", "remove", "nosuch", check=False)
    assert result.returncode == 1
    assert "Remove shop" not in result.stdout + result.stderr
    assert result.stderr.strip() == (
        "Error: shop 'nosuch' not found: see 'bcctrack shop list'"
    )

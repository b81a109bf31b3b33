"""Opt-out: signed tokens, the mailto: address at the intake, suppression."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from carriers.fake_carrier import FakeCarrierServer
from mailhandler.notifier import Notifier
from mailhandler.optout import (
    list_opt_outs,
    make_token,
    signing_key,
    unsubscribe_headers,
    verify_token,
)
from mailhandler.outbound import SmtpBackend
from mailhandler.settings import Settings
from mailhandler.shops import add_shop
from mailhandler.store.models import Notification, NotificationState
from support import add_shipment, running_intake, smtp_sink
from test_poller import (
    DHL_PATH,
    IN_TRANSIT,
    NUMBER,
    OUT_FOR_DELIVERY,
    PRE_TRANSIT,
    dhl_answer,
    make_due,
    make_poller,
    make_settings,
    run_round,
    send_all,
)


def test_token_round_trip_and_tampering(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    key = signing_key(settings)
    token = make_token(key, 42)
    assert verify_token(key, token) == 42
    assert verify_token(key, token.upper()) == 42
    assert verify_token(key, "43." + token.split(".")[1]) is None
    assert verify_token(key, token[:-1] + ("a" if token[-1] != "a" else "b")) is None
    assert verify_token(b"another key of at least 32 bytes!", token) is None
    assert (tmp_path / "unsubscribe.key").stat().st_mode & 0o777 == 0o600
    assert signing_key(settings) == key


def test_one_click_link_when_base_url_set(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        intake_domain="bcc.test",
        unsubscribe_base_url="https://bcc.test/unsubscribe",
    )
    headers = unsubscribe_headers(settings, 7)
    mailto, url = (part.strip() for part in headers["List-Unsubscribe"].split(","))
    assert mailto.startswith("<mailto:optout.7.")
    assert "@bcc.test?subject=unsubscribe>" in mailto
    assert url.startswith("<https://bcc.test/unsubscribe?token=7.")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "List-Unsubscribe-Post" not in unsubscribe_headers(
        Settings(data_dir=tmp_path), 7
    )


def test_http_base_url_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="https"):
        Settings(data_dir=tmp_path, unsubscribe_base_url="http://bcc.test/u")


def _send(port: int, recipient: str) -> dict[str, tuple[int, bytes]]:
    email = EmailMessage()
    email["From"] = "customer@example.com"
    email["To"] = recipient
    email["Subject"] = "unsubscribe"
    email.set_content("unsubscribe")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.send_message(email, to_addrs=[recipient])


def test_opted_out_address_gets_nothing_more(
    engine: Engine, tmp_path: Path, carrier_server: FakeCarrierServer
) -> None:
    shop = add_shop(engine, "acme", "Acme", ["acme.example"])
    assert shop.id is not None
    add_shipment(
        engine, shop.id, NUMBER, "dhl_paket", customer_email="Chris@Example.com"
    )
    settings = make_settings(tmp_path, carrier_server, intake_port=0)
    with smtp_sink() as (sink, port):
        notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", port))
        carrier_server.reply("GET", DHL_PATH, dhl_answer(PRE_TRANSIT, IN_TRANSIT))
        run_round(make_poller(engine, settings))
        send_all(notifier)
        [first] = sink.wait_for(1)
        header = str(first.message["List-Unsubscribe"]).strip()
        address = header.split("mailto:")[1].split("?")[0]

        with running_intake(engine, settings) as intake_port:
            # A forged token is an unknown recipient.
            forged = address.replace(address.split(".")[2][:4], "aaaa", 1)
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                _send(intake_port, forged)
            assert _send(intake_port, address) == {}
        [entry] = list_opt_outs(engine, "acme")
        assert entry.address == "chris@example.com"
        assert entry.source == "mailto"

        carrier_server.reply(
            "GET", DHL_PATH, dhl_answer(PRE_TRANSIT, IN_TRANSIT, OUT_FOR_DELIVERY)
        )
        make_due(engine)
        run_round(make_poller(engine, settings))
        assert asyncio.run(_nothing_due(notifier))
        assert sink.wait_for(2, timeout=1) == [first]
    with Session(engine) as session:
        later = session.scalars(
            select(Notification).where(Notification.update == "out_for_delivery")
        ).one()
    assert later.state == NotificationState.SUPPRESSED
    assert later.reason == "recipient opted out"


async def _nothing_due(notifier: Notifier) -> bool:
    return await asyncio.to_thread(notifier.claim_next) is None

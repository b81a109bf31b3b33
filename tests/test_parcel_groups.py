"""Updates of several parcels of one order go out as one email, once."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections import Counter
from datetime import timedelta
from email import message_from_bytes
from email.message import Message
from email.policy import default
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text, update
from sqlmodel import Session

from carriers.fake_carrier import FakeCarrierServer
from mailhandler.notifier import Notifier
from mailhandler.optout import add_opt_out
from mailhandler.outbound import FileBackend, SmtpBackend
from mailhandler.pipeline import Pipeline
from mailhandler.settings import Settings
from mailhandler.shops import add_shop, bcc_address
from mailhandler.store import transaction
from mailhandler.store.models import (
    Notification,
    NotificationState,
    Order,
    Shipment,
    Shop,
    UpdateType,
    utcnow,
)
from mailhandler.triggers import group_updates, queue_update
from support import (
    add_shipment,
    crlf,
    free_port,
    guard_loopback,
    running_intake,
    smtp_sink,
)
from test_poller import (
    IN_TRANSIT,
    PRE_TRANSIT,
    dhl_answer,
    make_due,
    make_poller,
    make_settings,
    run_round,
    send_all,
)

NUMBERS = ["00340434161094042557", "00340434220618654475", "00340434220618654482"]
DHL_LINK = "https://www.dhl.de/de/privatkunden/pakete-empfangen/verfolgen.html"


def _shipping_email(numbers: list[str]) -> bytes:
    return (
        "From: Acme Outdoor <shop@acme.example>\n"
        "To: Chris Kunde <chris@kunde.example>\n"
        "Subject: Ihre Bestellung 5004 wurde versandt\n"
        "Message-ID: <5004@acme.example>\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Language: de\n\n"
        "Hallo Chris,\n\nIhre Bestellung 5004 wurde mit DHL versandt.\n\n"
        "Bestellnummer: 5004\n"
        f"Sendungsnummern: {', '.join(numbers)}\n\nViele Grüße\nAcme Outdoor\n"
    ).encode()


MONDIAL_RELAY_EMAIL = (
    "From: Boutique <shop@acme.example>\n"
    "To: Chris <chris@client.example>\n"
    "Subject: Votre commande 7001 a été expédiée\n"
    "Message-ID: <7001@acme.example>\n"
    "Content-Type: text/html; charset=utf-8\n\n"
    '<html lang="fr"><body><p>Bonjour Chris,</p>'
    "<p>Votre commande 7001 a été expédiée avec Mondial Relay.</p>"
    "<p>Numéro de commande : 7001</p><p>Numéro de suivi : 77116398</p>"
    "</body></html>\n"
).encode()


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(
        data_dir=tmp_path, intake_domain="bcc.test", retry_delay=0.001, **values
    )


def _receive(engine: Engine, settings: Settings, raw: bytes, language: str) -> None:
    """Send ``raw`` through the SMTP intake and process it with real extraction."""
    shop = add_shop(engine, "acme", "Acme Outdoor", ["acme.example"], language)
    intake = settings.model_copy(update={"intake_port": free_port()})
    with (
        running_intake(engine, intake) as port,
        smtplib.SMTP("127.0.0.1", port) as client,
    ):
        refused = client.sendmail(
            "bounce@acme.example", [bcc_address(shop, "bcc.test")], crlf(raw)
        )
    assert refused == {}
    pipeline = Pipeline(engine, settings)
    try:
        message_id = pipeline.claim_next()
        assert message_id is not None
        pipeline.process(message_id)
    finally:
        pipeline.close()


def _notifications(engine: Engine) -> list[Notification]:
    with Session(engine) as session:
        query = select(Notification).order_by(Notification.id)  # type: ignore[arg-type]
        return list(session.scalars(query))


def _bodies(email: Message) -> tuple[str, str]:
    text_part = email.get_body(("plain",))  # type: ignore[attr-defined]
    html_part = email.get_body(("html",))  # type: ignore[attr-defined]
    return text_part.get_content(), html_part.get_content()


@pytest.mark.parametrize("count", [2, 3])
def test_several_numbers_one_email(engine: Engine, tmp_path: Path, count: int) -> None:
    numbers = NUMBERS[:count]
    settings = _settings(tmp_path)
    _receive(engine, settings, _shipping_email(numbers), "de")

    with smtp_sink() as (sink, port):
        notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", port))
        assert send_all(notifier) == [NotificationState.SENT]
        received = sink.wait_for(1)
        # The same notifier and a restarted one find nothing more to send.
        assert send_all(notifier) == []
        restarted = Notifier(engine, settings, SmtpBackend("127.0.0.1", port))
        assert send_all(restarted) == []
        assert sink.wait_for(2, timeout=0.5) == received

    assert len(received) == 1
    email = received[0].message
    assert email["Subject"] == "Ihre Bestellung 5004 bei Acme Outdoor wurde versandt"
    assert email["Content-Language"] == "de"
    text_body, html = _bodies(email)
    assert "Ihre Pakete" in text_body
    assert "Ihre Pakete" in html
    for index, number in enumerate(numbers, start=1):
        link = f"{DHL_LINK}?piececode={number}"
        assert number in text_body
        assert link in text_body
        assert number in html
        assert f'href="{link}"' in html
        assert f"Paket {index} von {count}" in text_body

    notifications = _notifications(engine)
    assert len(notifications) == count
    assert {n.state for n in notifications} == {NotificationState.SENT}
    assert {n.message_id for n in notifications} == {email["Message-ID"]}


def test_mondial_relay_update_names_carrier(engine: Engine, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _receive(engine, settings, MONDIAL_RELAY_EMAIL, "fr")
    with Session(engine) as session:
        shipment = session.scalars(select(Shipment)).one()
    assert shipment.carrier == "other"
    assert shipment.carrier_name == "Mondial Relay"
    notifier = Notifier(engine, settings, FileBackend(settings.outbox_dir))
    assert send_all(notifier) == [NotificationState.SENT]
    files = list(settings.outbox_dir.glob("*.eml"))
    assert len(files) == 1
    email = message_from_bytes(files[0].read_bytes(), policy=default)
    text_body, html = _bodies(email)
    assert "Mondial Relay a pris en charge votre commande" in text_body
    assert "Transporteur\u00a0: Mondial Relay" in text_body
    assert "le transporteur a pris" not in text_body
    assert "Suivre mon colis" not in text_body
    assert "Mondial Relay" in html
    assert "href=" not in html.replace('href="mailto:', "")


# --- groups queued directly in the store --------------------------------------


def _queue_group(engine: Engine, shop_id: int, order_number: str, size: int) -> None:
    """Store an order with ``size`` shipments and one group of shipped updates."""
    with transaction(engine) as session:
        order = Order(
            shop_id=shop_id,
            order_number=order_number,
            customer_email=f"customer{order_number}@example.com",
            language="en",
        )
        session.add(order)
        session.flush()
        assert order.id is not None
        ids = []
        for index in range(size):
            shipment = Shipment(
                shop_id=shop_id,
                order_id=order.id,
                tracking_number=f"T{order_number}X{index}",
                carrier="dhl_paket",
                tracking_url=f"https://track.example/{order_number}/{index}",
            )
            session.add(shipment)
            session.flush()
            queued = queue_update(
                session,
                shipment,
                order,
                UpdateType.SHIPPED,
                utcnow(),
                timedelta(hours=1),
                hold_until=utcnow() + timedelta(minutes=5),
            )
            assert queued is not None and queued.id is not None
            ids.append(queued.id)
        group_updates(session, ids)


def _shop(engine: Engine) -> Shop:
    shop = add_shop(engine, "acme", "Acme", ["acme.example"])
    assert shop.id is not None
    return shop


def test_group_shares_one_head(engine: Engine) -> None:
    shop = _shop(engine)
    assert shop.id is not None
    _queue_group(engine, shop.id, "1", 3)
    notifications = _notifications(engine)
    head = notifications[0].id
    assert [n.group_id for n in notifications] == [head, head, head]
    # group_updates released the hold.
    assert all(n.next_attempt_at <= utcnow() for n in notifications)


def test_interrupted_group_not_resent(engine: Engine, tmp_path: Path) -> None:
    shop = _shop(engine)
    assert shop.id is not None
    _queue_group(engine, shop.id, "1", 2)
    # What a process leaves behind when it dies while the relay takes the
    # email: the mark on every row of the group, the lease run out.
    with Session(engine) as session, session.begin():
        session.execute(
            update(Notification).values(
                sending_at=utcnow() - timedelta(minutes=10),
                lease_owner="dead-process",
                lease_expires_at=utcnow() - timedelta(minutes=1),
            )
        )
    with smtp_sink() as (sink, port):
        notifier = Notifier(engine, _settings(tmp_path), SmtpBackend("127.0.0.1", port))
        assert send_all(notifier) == [NotificationState.UNCONFIRMED]
        assert sink.wait_for(1, timeout=0.5) == []
    states = {n.state for n in _notifications(engine)}
    assert states == {NotificationState.UNCONFIRMED}


def test_relay_down_retries_whole_group(engine: Engine, tmp_path: Path) -> None:
    shop = _shop(engine)
    assert shop.id is not None
    _queue_group(engine, shop.id, "1", 2)
    settings = _settings(tmp_path).model_copy(update={"retry_delay": 60})
    down = Notifier(engine, settings, SmtpBackend("127.0.0.1", free_port(), 2.0))
    assert send_all(down) == [NotificationState.PENDING]
    pending = _notifications(engine)
    assert {n.state for n in pending} == {NotificationState.PENDING}
    assert {n.sending_at for n in pending} == {None}
    assert len({n.next_attempt_at for n in pending}) == 1
    assert pending[0].next_attempt_at > utcnow()
    with Session(engine) as session, session.begin():
        session.execute(update(Notification).values(next_attempt_at=utcnow()))
    with smtp_sink() as (sink, port):
        notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", port))
        assert send_all(notifier) == [NotificationState.SENT]
        received = sink.wait_for(1)
    assert len(received) == 1
    assert {n.attempts for n in _notifications(engine)} == {2}


def test_opt_out_after_claim_suppresses_group(engine: Engine, tmp_path: Path) -> None:
    shop = _shop(engine)
    assert shop.id is not None
    _queue_group(engine, shop.id, "1", 2)
    notifier = Notifier(engine, _settings(tmp_path), FileBackend(tmp_path / "out"))
    group_id = notifier.claim_next()
    assert group_id is not None
    add_opt_out(engine, shop.id, "customer1@example.com", "admin")
    assert asyncio.run(notifier.send(group_id)) == NotificationState.SUPPRESSED
    assert not list((tmp_path / "out").glob("*.eml"))
    notifications = _notifications(engine)
    assert {n.state for n in notifications} == {NotificationState.SUPPRESSED}
    assert {n.reason for n in notifications} == {"recipient opted out"}


# --- two notifiers on one PostgreSQL database -------------------------------------

GROUPS = 12


def test_locked_head_keeps_group_from_others(
    pg_engines: tuple[Engine, Engine], tmp_path: Path
) -> None:
    first, second = pg_engines
    shop = _shop(first)
    assert shop.id is not None
    _queue_group(first, shop.id, "1", 3)
    head = _notifications(first)[0].id
    notifier = Notifier(second, _settings(tmp_path), FileBackend(tmp_path / "out"))
    # A claimer in another process has locked the head row: the other rows of
    # the group are due, but no one else may take them on their own.
    with first.connect() as connection, connection.begin():
        connection.execute(
            text("SELECT id FROM notification WHERE id = :id FOR UPDATE"),
            {"id": head},
        )
        assert notifier.claim_next() is None
    assert notifier.claim_next() == head
    leased = {n.lease_owner for n in _notifications(first)}
    assert leased == {notifier.owner}


def test_two_notifiers_send_each_parcel_once(
    pg_engines: tuple[Engine, Engine], tmp_path: Path
) -> None:
    first, _ = pg_engines
    shop = _shop(first)
    assert shop.id is not None
    for order in range(GROUPS):
        _queue_group(first, shop.id, str(order), 3)
    settings = _settings(tmp_path)
    start = threading.Barrier(2)
    with smtp_sink() as (sink, port):
        notifiers = [
            Notifier(engine, settings, SmtpBackend("127.0.0.1", port))
            for engine in pg_engines
        ]

        async def send_groups(notifier: Notifier) -> int:
            await asyncio.to_thread(start.wait)
            sent = 0
            while group_id := await asyncio.to_thread(notifier.claim_next):
                if await notifier.send(group_id) == NotificationState.SENT:
                    sent += 1
            return sent

        async def both() -> list[int]:
            return list(await asyncio.gather(*(send_groups(n) for n in notifiers)))

        counts = asyncio.run(both())
        received = sink.wait_for(GROUPS, timeout=10)
        assert sink.wait_for(GROUPS + 1, timeout=0.5) == received
    assert sum(counts) == GROUPS
    assert len(received) == GROUPS
    numbers: Counter[str] = Counter()
    for message in received:
        text_body, _ = _bodies(message.message)
        numbers.update(
            word for word in text_body.split() if word.startswith("T") and "X" in word
        )
    assert len(numbers) == GROUPS * 3
    assert max(numbers.values()) == 1
    assert {n.state for n in _notifications(first)} == {NotificationState.SENT}


# --- one poller round -----------------------------------------------------------


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    guard_loopback(monkeypatch)


def test_poll_round_groups_one_order(
    engine: Engine, tmp_path: Path, carrier_server: FakeCarrierServer
) -> None:
    shop = _shop(engine)
    assert shop.id is not None
    first = add_shipment(engine, shop.id, NUMBERS[0], "dhl_paket")
    with transaction(engine) as session:
        order_id = session.get(Shipment, first).order_id  # type: ignore[union-attr]
        session.add(
            Shipment(
                shop_id=shop.id,
                order_id=order_id,
                tracking_number=NUMBERS[1],
                carrier="dhl_paket",
                tracking_url=f"https://track.example/{NUMBERS[1]}",
            )
        )

    # The DHL adapter takes the response's only shipment whatever its number,
    # so one response moves both shipments to in transit.
    carrier_server.reply("GET", "/track/shipments", dhl_answer(PRE_TRANSIT, IN_TRANSIT))
    settings = make_settings(tmp_path, carrier_server)
    make_due(engine)
    done = run_round(make_poller(engine, settings))
    assert done.polled == 2

    notifications = _notifications(engine)
    assert [n.update for n in notifications] == ["shipped", "shipped"]
    assert {n.group_id for n in notifications} == {notifications[0].id}

    with smtp_sink() as (sink, port):
        notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", port))
        assert send_all(notifier) == [NotificationState.SENT]
        received = sink.wait_for(2, timeout=0.5)

    assert len(received) == 1
    text_body, _ = _bodies(received[0].message)
    assert NUMBERS[0] in text_body
    assert NUMBERS[1] in text_body


def test_poll_round_holds_updates_until_grouped(
    engine: Engine,
    tmp_path: Path,
    carrier_server: FakeCarrierServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shop = _shop(engine)
    assert shop.id is not None
    add_shipment(engine, shop.id, NUMBERS[0], "dhl_paket")
    carrier_server.reply("GET", "/track/shipments", dhl_answer(PRE_TRANSIT, IN_TRANSIT))
    settings = make_settings(tmp_path, carrier_server)
    poller = make_poller(engine, settings)
    # A round that stops before it groups its updates leaves them held, so
    # no notifier takes one while the round may still add to its group.
    group = poller._group
    monkeypatch.setattr(poller, "_group", lambda ids: None)
    make_due(engine)
    run_round(poller)
    notifier = Notifier(engine, settings, FileBackend(tmp_path / "out"))
    assert notifier.claim_next() is None
    held = _notifications(engine)
    assert len(held) == 1
    assert held[0].next_attempt_at > utcnow()
    group([held[0].id or 0])
    assert notifier.claim_next() == held[0].id

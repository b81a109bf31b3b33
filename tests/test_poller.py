"""The poller against a local DHL server: status walk, emails, schedule, limits."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from sqlmodel import Session

from carriers.fake_carrier import FakeCarrierServer, Reply
from mailhandler.carriers import CarrierRegistry
from mailhandler.notifier import Notifier
from mailhandler.outbound import SmtpBackend
from mailhandler.poller import SUPERSEDED, Poller, RoundResult, poll_shipment
from mailhandler.settings import Settings
from mailhandler.shops import add_shop
from mailhandler.store.models import (
    CarrierAccount,
    Notification,
    NotificationState,
    PollState,
    Shipment,
    ShipmentPoll,
    TrackingEvent,
    utcnow,
)
from support import add_shipment, guard_loopback, smtp_sink

NUMBER = "00340434161094042557"
DHL_PATH = "/track/shipments"


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    guard_loopback(monkeypatch)


def dhl_event(hours_ago: float, code: str, description: str) -> dict[str, Any]:
    when = (utcnow() - timedelta(hours=hours_ago)).isoformat(timespec="seconds")
    return {
        "timestamp": when,
        "location": {"address": {"addressLocality": "Bonn", "countryCode": "DE"}},
        "statusCode": code,
        "status": code,
        "description": description,
    }


PRE_TRANSIT = dhl_event(30, "pre-transit", "The instruction data have been provided")
IN_TRANSIT = dhl_event(20, "transit", "The shipment has been processed")
OUT_FOR_DELIVERY = dhl_event(2, "transit", "The shipment is out for delivery")
DELIVERED = dhl_event(1, "delivered", "The shipment has been delivered")


def dhl_answer(*events: dict[str, Any], number: str = NUMBER) -> Reply:
    """A DHL response with ``events`` given oldest first."""
    newest_first = list(reversed(events))
    return Reply(
        json={
            "shipments": [
                {
                    "id": number,
                    "service": "parcel-de",
                    "status": newest_first[0],
                    "events": newest_first,
                }
            ]
        }
    )


def make_settings(tmp_path: Path, server: FakeCarrierServer, **values: Any) -> Settings:
    defaults: dict[str, Any] = {
        "data_dir": tmp_path,
        "intake_domain": "bcc.test",
        "dhl_base_url": server.url,
        "dhl_api_key": "dhl-key",
        "poll_first_delay_minutes": 0,
        "carrier_timeout": 1.0,
        "retry_delay": 60,
    }
    return Settings(**{**defaults, **values})


def make_poller(engine: Engine, settings: Settings) -> Poller:
    registry = CarrierRegistry.from_settings(settings)
    for adapter in registry.adapters:
        # The tests do not wait DHL's second between calls.
        adapter.min_interval = 0.0
    return Poller(engine, settings, registry)


def run_round(poller: Poller) -> RoundResult:
    async def go() -> RoundResult:
        try:
            return await poller.poll_round()
        finally:
            await poller.registry.aclose()

    return asyncio.run(go())


def make_due(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        session.execute(
            update(ShipmentPoll).values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
        session.execute(update(CarrierAccount).values(next_call_at=utcnow()))


def send_all(notifier: Notifier) -> list[NotificationState | None]:
    async def run() -> list[NotificationState | None]:
        states = []
        while (notification_id := notifier.claim_next()) is not None:
            states.append(await notifier.send(notification_id))
        return states

    return asyncio.run(run())


def shipment_of(engine: Engine, shipment_id: int) -> Shipment:
    with Session(engine) as session:
        shipment = session.get(Shipment, shipment_id)
        assert shipment is not None
        return shipment


def poll_of(engine: Engine, shipment_id: int) -> ShipmentPoll:
    with Session(engine) as session:
        return session.scalars(
            select(ShipmentPoll).where(ShipmentPoll.shipment_id == shipment_id)
        ).one()


def notifications(engine: Engine) -> list[Notification]:
    with Session(engine) as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


@pytest.fixture
def shop_id(engine: Engine) -> int:
    shop = add_shop(engine, "acme", "Acme Outdoor", ["acme.example"], language="de")
    assert shop.id is not None
    return shop.id


def test_walk_to_delivered_one_email_per_change(
    engine: Engine, tmp_path: Path, carrier_server: FakeCarrierServer, shop_id: int
) -> None:
    shipment_id = add_shipment(engine, shop_id, NUMBER, "dhl_paket", language="fr")
    steps = [
        ((PRE_TRANSIT,), "pending", None),
        ((PRE_TRANSIT, IN_TRANSIT), "in_transit", "a été expédiée"),
        ((PRE_TRANSIT, IN_TRANSIT, OUT_FOR_DELIVERY), "out_for_delivery", "arrive"),
        (
            (PRE_TRANSIT, IN_TRANSIT, OUT_FOR_DELIVERY, DELIVERED),
            "delivered",
            "a été livrée",
        ),
    ]
    with smtp_sink() as (sink, port):
        settings = make_settings(tmp_path, carrier_server)
        notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", port))
        expected = 0
        for events, status, subject in steps:
            carrier_server.reply("GET", DHL_PATH, dhl_answer(*events))
            make_due(engine)
            done = run_round(make_poller(engine, settings))
            assert done.polled == 1
            assert shipment_of(engine, shipment_id).status == status
            send_all(notifier)
            if subject is not None:
                expected += 1
            received = sink.wait_for(expected, timeout=5)
            assert len(received) == expected
            if subject is not None:
                email = received[-1].message
                assert subject in email["Subject"]
                assert email["Content-Language"] == "fr"
                assert (
                    str(email["List-Unsubscribe"]).strip().startswith("<mailto:optout.")
                )
        # Delivered is final: the poll stops and no further request goes out.
        requests_before = len(carrier_server.requests)
        make_due(engine)
        run_round(make_poller(engine, settings))
        assert len(carrier_server.requests) == requests_before
        assert sink.wait_for(expected + 1, timeout=0.5) == received
    assert poll_of(engine, shipment_id).state == PollState.STOPPED
    sent = [n.update for n in notifications(engine)]
    assert sent == ["shipped", "out_for_delivery", "delivered"]
    request = carrier_server.requests_to("GET", DHL_PATH)[0]
    assert request.query["trackingNumber"] == [NUMBER]
    assert request.query["service"] == ["parcel-de"]
    assert request.headers["dhl-api-key"] == "dhl-key"


def test_repeated_history_stored_once(
    engine: Engine, tmp_path: Path, carrier_server: FakeCarrierServer, shop_id: int
) -> None:
    shipment_id = add_shipment(engine, shop_id, NUMBER, "dhl_paket")
    carrier_server.reply("GET", DHL_PATH, dhl_answer(PRE_TRANSIT, IN_TRANSIT))
    settings = make_settings(tmp_path, carrier_server)
    for _ in range(3):
        make_due(engine)
        run_round(make_poller(engine, settings))
    with Session(engine) as session:
        events = list(
            session.scalars(
                select(TrackingEvent).where(TrackingEvent.shipment_id == shipment_id)
            )
        )
    assert len(events) == 2
    assert {event.raw_code for event in events} == {"pre-transit", "transit"}
    assert all(event.source == "dhl" for event in events)
    assert len(notifications(engine)) == 1


def test_first_poll_of_late_shipment_sends_newest_only(
    engine: Engine, tmp_path: Path, carrier_server: FakeCarrierServer, shop_id: int
) -> None:
    add_shipment(engine, shop_id, NUMBER, "dhl_paket")
    carrier_server.reply(
        "GET",
        DHL_PATH,
        dhl_answer(PRE_TRANSIT, IN_TRANSIT, OUT_FOR_DELIVERY, DELIVERED),
    )
    run_round(make_poller(engine, make_settings(tmp_path, carrier_server)))
    states = {n.update: (n.state, n.reason) for n in notifications(engine)}
    assert states["delivered"] == (NotificationState.PENDING, None)
    assert states["shipped"] == (NotificationState.SUPPRESSED, SUPERSEDED)
    assert states["out_for_delivery"] == (NotificationState.SUPPRESSED, SUPERSEDED)


def test_schedule_follows_status(
    engine: Engine, tmp_path: Path, carrier_server: FakeCarrierServer, shop_id: int
) -> None:
    shipment_id = add_shipment(engine, shop_id, NUMBER, "dhl_paket")
    settings = make_settings(tmp_path, carrier_server)
    cases = [
        ((PRE_TRANSIT,), settings.poll_pending_hours),
        ((PRE_TRANSIT, IN_TRANSIT), settings.poll_in_transit_hours),
        ((PRE_TRANSIT, IN_TRANSIT, OUT_FOR_DELIVERY), 1.0),
    ]
    for events, hours in cases:
        carrier_server.reply("GET", DHL_PATH, dhl_answer(*events))
        make_due(engine)
        run_round(make_poller(engine, settings))
        poll = poll_of(engine, shipment_id)
        wait = (poll.next_attempt_at - utcnow()).total_seconds() / 3600
        assert hours * 0.84 <= wait <= hours * 1.16
        assert poll.attempts == 0
        assert poll.lease_owner is None


def test_new_shipment_waits_first_delay(
    engine: Engine, tmp_path: Path, carrier_server: FakeCarrierServer, shop_id: int
) -> None:
    add_shipment(engine, shop_id, NUMBER, "dhl_paket")
    carrier_server.reply("GET", DHL_PATH, dhl_answer(PRE_TRANSIT))
    settings = make_settings(tmp_path, carrier_server, poll_first_delay_minutes=20)
    done = run_round(make_poller(engine, settings))
    assert done.claimed == 0
    assert carrier_server.requests == []


def test_no_news_expires_without_email(
    engine: Engine, tmp_path: Path, carrier_server: FakeCarrierServer, shop_id: int
) -> None:
    shipment_id = add_shipment(engine, shop_id, NUMBER, "dhl_paket")
    carrier_server.reply("GET", DHL_PATH, dhl_answer(PRE_TRANSIT))
    settings = make_settings(tmp_path, carrier_server, expire_after_days=10)
    run_round(make_poller(engine, settings))
    with Session(engine) as session, session.begin():
        session.execute(
            update(ShipmentPoll).values(last_news_at=utcnow() - timedelta(days=11))
        )
    make_due(engine)
    run_round(make_poller(engine, settings))
    assert shipment_of(engine, shipment_id).status == "expired"
    assert poll_of(engine, shipment_id).state == PollState.STOPPED
    assert notifications(engine) == []


def test_daily_quota_defers_until_midnight(
    engine: Engine, tmp_path: Path, carrier_server: FakeCarrierServer, shop_id: int
) -> None:
    for index in range(3):
        add_shipment(
            engine,
            shop_id,
            f"0034043416109404{index:04d}",
            "dhl_paket",
            order_number=str(index),
        )
    carrier_server.reply(
        "GET", DHL_PATH, Reply(status=404, json={"title": "No shipment"})
    )
    settings = make_settings(tmp_path, carrier_server, dhl_daily_quota=2)
    done = run_round(make_poller(engine, settings))
    assert len(carrier_server.requests) == 2
    assert done.polled == 2
    assert done.deferred == 1
    with Session(engine) as session:
        waiting = session.scalars(
            select(ShipmentPoll).where(ShipmentPoll.polls == 0)
        ).one()
    tomorrow = (utcnow() + timedelta(days=1)).date()
    assert waiting.next_attempt_at.date() == tomorrow
    assert waiting.last_error == (
        f"waiting for dhl credential 'default' until {tomorrow}T00:00:00+00:00: "
        "daily quota of 2 calls used up"
    )


def test_rejected_key_pauses_credential(
    engine: Engine, tmp_path: Path, carrier_server: FakeCarrierServer, shop_id: int
) -> None:
    shipment_id = add_shipment(engine, shop_id, NUMBER, "dhl_paket")
    carrier_server.reply(
        "GET", DHL_PATH, Reply(status=401, json={"title": "Unauthorized"})
    )
    settings = make_settings(tmp_path, carrier_server, credential_pause_minutes=30)
    run_round(make_poller(engine, settings))
    with Session(engine) as session:
        account = session.scalars(select(CarrierAccount)).one()
    assert account.credential == "default"
    assert account.paused_until is not None
    assert account.paused_until > utcnow() + timedelta(minutes=25)
    # While paused, a due shipment is handed back without a request.
    make_due(engine)
    with Session(engine) as session, session.begin():
        session.execute(
            update(CarrierAccount).values(paused_until=utcnow() + timedelta(minutes=30))
        )
    run_round(make_poller(engine, settings))
    assert len(carrier_server.requests) == 1
    poll = poll_of(engine, shipment_id)
    assert poll.state == PollState.ACTIVE
    assert poll.next_attempt_at > utcnow() + timedelta(minutes=25)


def test_poll_now_ignores_schedule(
    engine: Engine, tmp_path: Path, carrier_server: FakeCarrierServer, shop_id: int
) -> None:
    shipment_id = add_shipment(engine, shop_id, NUMBER, "dhl_paket")
    carrier_server.reply("GET", DHL_PATH, dhl_answer(PRE_TRANSIT, IN_TRANSIT))
    settings = make_settings(tmp_path, carrier_server, poll_first_delay_minutes=60)
    poller = make_poller(engine, settings)

    async def go() -> RoundResult:
        try:
            return await poll_shipment(poller, shipment_id)
        finally:
            await poller.registry.aclose()

    done = asyncio.run(go())
    assert done.polled == 1
    assert shipment_of(engine, shipment_id).status == "in_transit"
    assert len(carrier_server.requests) == 1

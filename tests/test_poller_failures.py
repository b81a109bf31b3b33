"""Every adapter through the poller against a local carrier server.

Each adapter meets normal tracking, not found, 401, 429 with Retry-After,
500, a timeout and malformed JSON. None of them may crash the poller or lose
the shipment: after each failure the shipment is polled again and found.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from sqlmodel import Session

from carriers import carrier_payloads as payloads
from carriers.fake_carrier import FakeCarrierServer, Reply
from mailhandler.carriers import CarrierRegistry
from mailhandler.poller import Poller, RoundResult
from mailhandler.settings import Settings
from mailhandler.shops import add_shop
from mailhandler.store import open_store
from mailhandler.store.models import (
    CarrierAccount,
    PollState,
    Shipment,
    ShipmentPoll,
    utcnow,
)
from support import add_shipment, guard_loopback

UPS_TOKEN = {"access_token": "t", "token_type": "Bearer", "expires_in": "14399"}


@dataclass(frozen=True)
class Carrier:
    """How one adapter is configured, called and answered."""

    adapter: str
    carrier: str
    number: str
    settings: dict[str, str]
    method: str
    path: str
    found: Reply
    found_status: str
    not_found: Reply
    token: tuple[str, Reply] | None = None


def _carriers() -> list[Carrier]:
    ups_number = "1Z023E2X0214323462"
    fedex_number = "794843185271"
    usps_number = "9400111899223817576010"
    gls_number = "ZA123456789"
    dhl_number = "00340434161094042557"
    return [
        Carrier(
            "dhl",
            "dhl_paket",
            dhl_number,
            {"dhl_api_key": "dhl-key"},
            "GET",
            "/track/shipments",
            Reply(json=payloads.dhl_shipments(dhl_number)),
            "out_for_delivery",
            Reply(status=404, json={"title": "No result found", "status": 404}),
        ),
        Carrier(
            "ups",
            "ups",
            ups_number,
            {"ups_client_id": "ups-id", "ups_client_secret": "ups-secret"},
            "GET",
            f"/api/track/v1/details/{ups_number}",
            Reply(json=payloads.ups_track(ups_number)),
            "out_for_delivery",
            Reply(
                status=404,
                json={"response": {"errors": [{"code": "TW0001", "message": "NF"}]}},
            ),
            ("/security/v1/oauth/token", Reply(json=UPS_TOKEN)),
        ),
        Carrier(
            "fedex",
            "fedex",
            fedex_number,
            {"fedex_client_id": "fx-id", "fedex_client_secret": "fx-secret"},
            "POST",
            "/track/v1/trackingnumbers",
            Reply(
                json=payloads.fedex_track(
                    (fedex_number, payloads.fedex_track_result(fedex_number))
                )
            ),
            "delivered",
            Reply(
                json=payloads.fedex_track(
                    (fedex_number, payloads.fedex_not_found(fedex_number))
                )
            ),
            ("/oauth/token", Reply(json=payloads.TOKEN)),
        ),
        Carrier(
            "usps",
            "usps",
            usps_number,
            {"usps_client_id": "usps-id", "usps_client_secret": "usps-secret"},
            "GET",
            f"/tracking/v3/tracking/{usps_number}",
            Reply(json=payloads.usps_tracking(usps_number)),
            "delivered",
            Reply(
                status=404,
                json={"apiVersion": "3.0.0", "error": {"code": "404", "message": "NF"}},
            ),
            ("/oauth2/v3/token", Reply(json=payloads.TOKEN)),
        ),
        Carrier(
            "seventeentrack",
            "gls",
            gls_number,
            {"seventeentrack_api_key": "17-key"},
            "POST",
            "/track/v2.2/gettrackinfo",
            Reply(
                json=payloads.seventeentrack_answer(
                    [payloads.seventeentrack_in_transit(gls_number)]
                )
            ),
            "in_transit",
            Reply(
                json=payloads.seventeentrack_answer(
                    [],
                    [payloads.seventeentrack_rejected(gls_number, -18019909, "none")],
                )
            ),
        ),
    ]


CARRIERS = {carrier.adapter: carrier for carrier in _carriers()}
FAILURES = ["not_found", "401", "429", "500", "timeout", "malformed_json"]


def _failure_reply(carrier: Carrier, failure: str) -> Reply:
    return {
        "not_found": carrier.not_found,
        "401": Reply(status=401, json={"error": "invalid credentials"}),
        "429": Reply(
            status=429, json={"error": "slow down"}, headers={"Retry-After": "120"}
        ),
        "500": Reply(status=500, json={"error": "internal"}),
        "timeout": Reply(delay=1.5, json={}),
        "malformed_json": Reply(body=b'{"shipments": [ {"id": '),
    }[failure]


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    guard_loopback(monkeypatch)


@pytest.fixture
def server() -> Iterator[FakeCarrierServer]:
    fake = FakeCarrierServer()
    fake.start()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_store(f"sqlite:///{tmp_path / 'bcctrack.db'}")
    try:
        yield engine
    finally:
        engine.dispose()


def _settings(tmp_path: Path, server: FakeCarrierServer, carrier: Carrier) -> Settings:
    urls = {
        f"{name}_base_url": server.url
        for name in ("dhl", "ups", "fedex", "usps", "seventeentrack")
    }
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "poll_first_delay_minutes": 0,
        "carrier_timeout": 0.5,
        "poll_retry_delay": 30,
        **urls,
        **carrier.settings,
    }
    return Settings(**values)


def _round(engine: Engine, settings: Settings) -> RoundResult:
    async def go() -> RoundResult:
        registry = CarrierRegistry.from_settings(settings)
        for adapter in registry.adapters:
            adapter.min_interval = 0.0
        try:
            return await Poller(engine, settings, registry).poll_round()
        finally:
            await registry.aclose()

    return asyncio.run(go())


def _poll(engine: Engine) -> ShipmentPoll:
    with Session(engine) as session:
        return session.scalars(select(ShipmentPoll)).one()


def _account(engine: Engine) -> CarrierAccount:
    with Session(engine) as session:
        return session.scalars(select(CarrierAccount)).one()


def _reset(engine: Engine) -> None:
    # Make the shipment due and the credential usable again, as time would.
    with Session(engine) as session, session.begin():
        session.execute(update(ShipmentPoll).values(next_attempt_at=utcnow()))
        session.execute(
            update(CarrierAccount).values(
                next_call_at=utcnow(), paused_until=None, errors=0
            )
        )


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("adapter", sorted(CARRIERS))
def test_failure_keeps_shipment(
    sqlite_engine: Engine,
    tmp_path: Path,
    server: FakeCarrierServer,
    adapter: str,
    failure: str,
) -> None:
    carrier = CARRIERS[adapter]
    shop = add_shop(sqlite_engine, "acme", "Acme", ["acme.example"])
    assert shop.id is not None
    shipment_id = add_shipment(sqlite_engine, shop.id, carrier.number, carrier.carrier)
    if carrier.token is not None:
        server.reply("POST", carrier.token[0], carrier.token[1])
    server.reply(carrier.method, carrier.path, _failure_reply(carrier, failure))
    if adapter == "seventeentrack":
        server.reply(
            "POST",
            "/track/v2.2/register",
            Reply(json=payloads.seventeentrack_answer([])),
        )
    settings = _settings(tmp_path, server, carrier)

    done = _round(sqlite_engine, settings)

    assert done.claimed == 1
    poll = _poll(sqlite_engine)
    assert poll.state == PollState.ACTIVE
    assert poll.lease_owner is None
    assert poll.next_attempt_at > utcnow()
    now = utcnow()
    if failure == "not_found":
        assert done.polled == 1
        assert poll.polls == 1
        hours = (poll.next_attempt_at - now).total_seconds() / 3600
        assert settings.poll_pending_hours * 0.84 <= hours
    elif failure == "401":
        account = _account(sqlite_engine)
        assert account.paused_until is not None
        assert account.paused_until > now + timedelta(minutes=55)
        assert poll.next_attempt_at >= account.paused_until
        assert poll.attempts == 0
    elif failure == "429":
        account = _account(sqlite_engine)
        wait = (account.next_call_at - now).total_seconds()
        assert 100 <= wait <= 121
        assert poll.next_attempt_at >= account.next_call_at
    else:
        assert done.failed == 1
        assert poll.last_error is not None
        assert poll.attempts == 1
        assert _account(sqlite_engine).errors == 1

    # The shipment is still there and the next poll finds it.
    server.reply(carrier.method, carrier.path, carrier.found)
    _reset(sqlite_engine)
    again = _round(sqlite_engine, settings)
    assert again.polled == 1
    with Session(sqlite_engine) as session:
        shipment = session.get(Shipment, shipment_id)
        assert shipment is not None
        assert shipment.status == carrier.found_status
    assert _poll(sqlite_engine).attempts == 0


def test_fedex_batch_rejected_retries_one_by_one(
    sqlite_engine: Engine, tmp_path: Path, server: FakeCarrierServer
) -> None:
    carrier = CARRIERS["fedex"]
    shop = add_shop(sqlite_engine, "acme", "Acme", ["acme.example"])
    assert shop.id is not None
    good = "794843185271"
    bad = "123"
    add_shipment(sqlite_engine, shop.id, good, "fedex", order_number="1")
    add_shipment(sqlite_engine, shop.id, bad, "fedex", order_number="2")
    server.reply("POST", "/oauth/token", Reply(json=payloads.TOKEN))
    invalid = {"errors": [{"code": "TRACKING.TRACKINGNUMBER.INVALID", "message": "x"}]}
    server.reply(
        "POST",
        carrier.path,
        Reply(status=400, json=invalid),
        Reply(json=payloads.fedex_track((good, payloads.fedex_track_result(good)))),
        Reply(status=400, json=invalid),
    )
    done = _round(sqlite_engine, _settings(tmp_path, server, carrier))
    calls = server.requests_to("POST", carrier.path)
    assert len(calls) == 3
    assert len(calls[0].json()["trackingInfo"]) == 2
    assert len(calls[1].json()["trackingInfo"]) == 1
    assert done.polled == 2
    with Session(sqlite_engine) as session:
        statuses = {
            s.tracking_number: s.status for s in session.scalars(select(Shipment))
        }
        polls = list(session.scalars(select(ShipmentPoll).order_by(ShipmentPoll.id)))
    assert statuses == {good: "delivered", bad: "pending"}
    assert polls[1].last_error is not None

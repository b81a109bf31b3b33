"""Carrier credentials in the poller: pauses, resuming, failures, waiting slots.

Every test runs the real poller against a local carrier server, on SQLite
and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from carriers import carrier_payloads as payloads
from carriers.fake_carrier import FakeCarrierServer, Reply
from mailhandler import carrier_accounts
from mailhandler.poller import TOLERATED_ERRORS, Poller, RoundResult, poll_shipment
from mailhandler.polls import PollLeasedError, adopt_new_shipments
from mailhandler.reports import carrier_account_reports
from mailhandler.settings import Settings
from mailhandler.shop_credentials import remove_credentials, set_credentials
from mailhandler.shops import add_shop, get_shop, remove_shop
from mailhandler.store import transaction
from mailhandler.store.models import (
    CarrierAccount,
    PollState,
    ShipmentPoll,
    utcnow,
)
from mailhandler.store.queue import claim
from support import add_shipment, guard_loopback
from test_poller import (
    DHL_PATH,
    IN_TRANSIT,
    NUMBER,
    PRE_TRANSIT,
    dhl_answer,
    make_poller,
    make_settings,
    poll_of,
    run_round,
    shipment_of,
)


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
def shop_id(engine: Engine) -> int:
    shop = add_shop(engine, "acme", "Acme Outdoor", ["acme.example"])
    assert shop.id is not None
    return shop.id


UNAUTHORIZED = Reply(status=401, json={"title": "Unauthorized"})
SERVER_ERROR = Reply(status=500, json={"title": "Internal Server Error"})
USPS_NUMBERS = [
    "9400111899223817576010",
    "9400111899223817576027",
    "9400111899223817576034",
]
FEDEX_GOOD = "794843185271"
FEDEX_BAD = "794843185288"


def _numbers(count: int) -> list[str]:
    return [f"0034043416109404{index:04d}" for index in range(count)]


def _accounts(engine: Engine) -> dict[tuple[str, str], CarrierAccount]:
    with Session(engine) as session:
        return {
            (a.adapter, a.credential): a
            for a in session.scalars(select(CarrierAccount))
        }


def _polls(engine: Engine) -> list[ShipmentPoll]:
    with Session(engine) as session:
        return list(session.scalars(select(ShipmentPoll).order_by(ShipmentPoll.id)))


def _lease_owner(engine: Engine, shipment_id: int) -> str | None:
    with Session(engine) as session:
        return session.scalars(
            select(ShipmentPoll.lease_owner).where(
                ShipmentPoll.shipment_id == shipment_id
            )
        ).first()


def _dhl_keys(server: FakeCarrierServer) -> list[str]:
    return [r.headers["dhl-api-key"] for r in server.requests_to("GET", DHL_PATH)]


def _close(poller: Poller) -> None:
    asyncio.run(poller.registry.aclose())


async def _until(condition: Callable[[], Any], timeout: float) -> Any:
    """Wait for ``condition`` (run in a thread) to be true, at most ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(condition)
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


def _pause_default_key(
    engine: Engine, tmp_path: Path, server: FakeCarrierServer, shop_id: int
) -> int:
    """Store a DHL shipment and let the carrier reject the configured key."""
    shipment_id = add_shipment(engine, shop_id, NUMBER, "dhl_paket")
    server.reply("GET", DHL_PATH, UNAUTHORIZED, dhl_answer(PRE_TRANSIT, IN_TRANSIT))
    run_round(make_poller(engine, make_settings(tmp_path, server)))
    account = _accounts(engine)[("dhl", "default")]
    assert account.paused_until is not None
    assert account.paused_until > utcnow() + timedelta(minutes=55)
    assert poll_of(engine, shipment_id).next_attempt_at >= account.paused_until
    return shipment_id


# --- pauses and resuming ----------------------------------------------------


def test_resume_makes_waiting_shipments_due(
    engine: Engine, tmp_path: Path, server: FakeCarrierServer, shop_id: int
) -> None:
    shipment_id = _pause_default_key(engine, tmp_path, server, shop_id)
    waiting = poll_of(engine, shipment_id).last_error
    assert waiting is not None
    assert waiting.startswith("waiting for dhl credential 'default' until ")
    assert "paused after a rejection" in waiting

    done = carrier_accounts.resume(engine, "dhl", "default")

    assert done.was_paused
    assert done.released == 1
    assert _accounts(engine)[("dhl", "default")].paused_until is None
    assert poll_of(engine, shipment_id).next_attempt_at <= utcnow()
    again = run_round(make_poller(engine, make_settings(tmp_path, server)))
    assert again.polled == 1
    assert shipment_of(engine, shipment_id).status == "in_transit"


def test_resume_leaves_scheduled_polls(
    engine: Engine, tmp_path: Path, server: FakeCarrierServer, shop_id: int
) -> None:
    shipment_id = add_shipment(engine, shop_id, NUMBER, "dhl_paket")
    server.reply("GET", DHL_PATH, dhl_answer(PRE_TRANSIT, IN_TRANSIT))
    run_round(make_poller(engine, make_settings(tmp_path, server)))
    scheduled = poll_of(engine, shipment_id).next_attempt_at
    assert scheduled > utcnow() + timedelta(hours=3)

    done = carrier_accounts.resume(engine, "dhl", "default")

    assert not done.was_paused
    assert done.released == 0
    assert poll_of(engine, shipment_id).next_attempt_at == scheduled


def test_status_report_shows_pause(
    engine: Engine, tmp_path: Path, server: FakeCarrierServer, shop_id: int
) -> None:
    _pause_default_key(engine, tmp_path, server, shop_id)
    settings = make_settings(tmp_path, server)

    (report,) = carrier_account_reports(engine, settings)

    assert report["adapter"] == "dhl"
    assert report["credential"] == "default"
    assert report["paused_until"] is not None
    assert "returned 401" in report["pause_reason"]
    assert "fingerprint" not in report["pause_reason"]
    assert "dhl-key" not in report["pause_reason"]
    assert report["waiting_shipments"] == 1
    assert report["quota_used"] == 1
    assert report["quota_limit"] == settings.dhl_daily_quota
    carrier_accounts.resume(engine, "dhl", "default")
    (after,) = carrier_account_reports(engine, settings)
    assert after["paused_until"] is None
    assert after["pause_reason"] is None
    assert after["waiting_shipments"] == 0


def test_same_key_at_start_keeps_pause(
    engine: Engine, tmp_path: Path, server: FakeCarrierServer, shop_id: int
) -> None:
    shipment_id = _pause_default_key(engine, tmp_path, server, shop_id)
    poller = make_poller(engine, make_settings(tmp_path, server))
    try:
        resumed = asyncio.run(poller.resume_changed_keys())
    finally:
        _close(poller)
    assert resumed == []
    assert _accounts(engine)[("dhl", "default")].paused_until is not None
    assert poll_of(engine, shipment_id).next_attempt_at > utcnow()


def test_changed_key_resumes_at_start(
    engine: Engine, tmp_path: Path, server: FakeCarrierServer, shop_id: int
) -> None:
    shipment_id = _pause_default_key(engine, tmp_path, server, shop_id)
    settings = make_settings(
        tmp_path, server, dhl_api_key="fixed-key", poll_interval=0.05
    )
    poller = make_poller(engine, settings)

    async def serve_until_polled() -> bool:
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        try:
            return bool(
                await _until(
                    lambda: shipment_of(engine, shipment_id).status == "in_transit",
                    timeout=10,
                )
            )
        finally:
            stop.set()
            await task
            await poller.registry.aclose()

    assert asyncio.run(serve_until_polled())
    assert _accounts(engine)[("dhl", "default")].paused_until is None
    assert _dhl_keys(server) == ["dhl-key", "fixed-key"]


def test_shop_credentials_set_resumes(
    engine: Engine, tmp_path: Path, server: FakeCarrierServer, shop_id: int
) -> None:
    shop = get_shop(engine, "acme")
    set_credentials(engine, shop, "dhl", api_key="shop-old-key")
    shipment_id = add_shipment(engine, shop_id, NUMBER, "dhl_paket")
    server.reply("GET", DHL_PATH, UNAUTHORIZED, dhl_answer(PRE_TRANSIT, IN_TRANSIT))
    settings = make_settings(tmp_path, server)
    run_round(make_poller(engine, settings))
    accounts = _accounts(engine)
    assert accounts[("dhl", "acme")].paused_until is not None
    assert ("dhl", "default") not in accounts

    done = set_credentials(engine, shop, "dhl", api_key="shop-new-key")

    assert done.was_paused
    assert done.released == 1
    assert run_round(make_poller(engine, settings)).polled == 1
    assert shipment_of(engine, shipment_id).status == "in_transit"
    assert _dhl_keys(server) == ["shop-old-key", "shop-new-key"]


def test_shop_credentials_bypass_paused_default(
    engine: Engine, tmp_path: Path, server: FakeCarrierServer, shop_id: int
) -> None:
    shipment_id = _pause_default_key(engine, tmp_path, server, shop_id)

    done = set_credentials(engine, get_shop(engine, "acme"), "dhl", api_key="shop-key")

    assert not done.was_paused
    assert done.released == 1
    assert poll_of(engine, shipment_id).next_attempt_at <= utcnow()
    assert _accounts(engine)[("dhl", "default")].paused_until is not None
    assert run_round(make_poller(engine, make_settings(tmp_path, server))).polled == 1
    assert _dhl_keys(server) == ["dhl-key", "shop-key"]


def test_shop_credentials_removed_release_shipments(
    engine: Engine, tmp_path: Path, server: FakeCarrierServer, shop_id: int
) -> None:
    shop = get_shop(engine, "acme")
    set_credentials(engine, shop, "dhl", api_key="shop-key")
    shipment_id = add_shipment(engine, shop_id, NUMBER, "dhl_paket")
    server.reply("GET", DHL_PATH, UNAUTHORIZED, dhl_answer(PRE_TRANSIT, IN_TRANSIT))
    settings = make_settings(tmp_path, server)
    run_round(make_poller(engine, settings))

    assert remove_credentials(engine, shop, "dhl")

    assert ("dhl", "acme") not in _accounts(engine)
    assert poll_of(engine, shipment_id).next_attempt_at <= utcnow()
    assert run_round(make_poller(engine, settings)).polled == 1
    assert _dhl_keys(server) == ["shop-key", "dhl-key"]


# --- failures of one number and of the carrier ------------------------------


def test_one_failing_number_spares_others(
    engine: Engine, tmp_path: Path, server: FakeCarrierServer, shop_id: int
) -> None:
    numbers = _numbers(3)
    for index, number in enumerate(numbers):
        add_shipment(engine, shop_id, number, "dhl_paket", order_number=str(index))
    ok = dhl_answer(PRE_TRANSIT, IN_TRANSIT)
    server.reply("GET", DHL_PATH, SERVER_ERROR, ok)

    done = run_round(make_poller(engine, make_settings(tmp_path, server)))

    assert len(server.requests_to("GET", DHL_PATH)) == 3
    assert done.failed == 1
    assert done.polled == 2
    assert done.deferred == 0
    account = _accounts(engine)[("dhl", "default")]
    assert account.errors == 0
    assert account.next_call_at < utcnow() + timedelta(seconds=5)
    failed, *polled = _polls(engine)
    assert failed.attempts == 1
    assert failed.last_error is not None
    assert failed.last_error.startswith("CarrierUnavailable")
    assert [poll.polls for poll in polled] == [1, 1]


def test_outage_backs_off_credential(
    engine: Engine, tmp_path: Path, server: FakeCarrierServer, shop_id: int
) -> None:
    numbers = _numbers(5)
    for index, number in enumerate(numbers):
        add_shipment(engine, shop_id, number, "dhl_paket", order_number=str(index))
    server.reply("GET", DHL_PATH, SERVER_ERROR)

    done = run_round(make_poller(engine, make_settings(tmp_path, server)))

    calls = TOLERATED_ERRORS + 1
    assert len(server.requests_to("GET", DHL_PATH)) == calls
    assert done.failed == calls
    assert done.deferred == 5 - calls
    account = _accounts(engine)[("dhl", "default")]
    assert account.errors == calls
    assert account.next_call_at > utcnow() + timedelta(seconds=40)
    waiting = _polls(engine)[calls:]
    for poll in waiting:
        assert poll.attempts == 0
        assert poll.last_error is not None
        assert "backing off after failed calls" in poll.last_error
        assert poll.next_attempt_at >= account.next_call_at


def test_failed_batch_retried_one_by_one(
    engine: Engine, tmp_path: Path, server: FakeCarrierServer, shop_id: int
) -> None:
    add_shipment(engine, shop_id, FEDEX_GOOD, "fedex", order_number="1")
    add_shipment(engine, shop_id, FEDEX_BAD, "fedex", order_number="2")
    server.reply("POST", "/oauth/token", Reply(json=payloads.TOKEN))
    good = payloads.fedex_track((FEDEX_GOOD, payloads.fedex_track_result(FEDEX_GOOD)))
    path = "/track/v1/trackingnumbers"
    server.reply("POST", path, SERVER_ERROR, Reply(json=good), SERVER_ERROR)
    settings = make_settings(
        tmp_path,
        server,
        fedex_base_url=server.url,
        fedex_client_id="fx-id",
        fedex_client_secret="fx-secret",
    )

    done = run_round(make_poller(engine, settings))

    calls = server.requests_to("POST", path)
    assert [len(call.json()["trackingInfo"]) for call in calls] == [2, 1, 1]
    assert done.polled == 1
    assert done.failed == 1
    good_poll, bad_poll = _polls(engine)
    assert good_poll.polls == 1
    assert bad_poll.attempts == 1
    assert bad_poll.last_error is not None
    assert _accounts(engine)[("fedex", "default")].errors == 1


# --- waiting for call slots ---------------------------------------------------


def _usps_settings(
    tmp_path: Path, server: FakeCarrierServer, **values: Any
) -> Settings:
    server.reply("POST", "/oauth2/v3/token", Reply(json=payloads.TOKEN))
    for number in USPS_NUMBERS:
        server.reply(
            "GET",
            f"/tracking/v3/tracking/{number}",
            Reply(json=payloads.usps_tracking(number)),
        )
    return make_settings(
        tmp_path,
        server,
        usps_base_url=server.url,
        usps_client_id="usps-id",
        usps_client_secret="usps-secret",
        **values,
    )


def _usps_poller(engine: Engine, settings: Settings, interval: float) -> Poller:
    poller = make_poller(engine, settings)
    for adapter in poller.registry.adapters:
        if adapter.name == "usps":
            adapter.min_interval = interval
    return poller


def test_round_hands_back_late_calls(
    engine: Engine, tmp_path: Path, server: FakeCarrierServer, shop_id: int
) -> None:
    for index, number in enumerate(USPS_NUMBERS):
        add_shipment(engine, shop_id, number, "usps", order_number=str(index))
    # A 40 s lease lets a round wait at most 10 s for a call slot.
    settings = _usps_settings(tmp_path, server, lease_seconds=40)
    poller = _usps_poller(engine, settings, interval=30)

    started = time.monotonic()
    done = run_round(poller)

    assert time.monotonic() - started < 5
    assert done.polled == 1
    assert done.deferred == 2
    tracked = [r for r in server.requests if r.path.startswith("/tracking/")]
    assert len(tracked) == 1
    now = utcnow()
    _, second, third = _polls(engine)
    assert now + timedelta(seconds=25) < second.next_attempt_at
    assert second.next_attempt_at < now + timedelta(seconds=45)
    assert now + timedelta(seconds=55) < third.next_attempt_at
    assert third.next_attempt_at < now + timedelta(seconds=75)
    for poll in (second, third):
        assert poll.lease_owner is None
        assert poll.attempts == 0
        assert poll.last_error is not None
        assert poll.last_error.startswith("waiting for usps credential 'default'")
        assert poll.last_error.endswith("waiting for the carrier's rate limit")


def test_waiting_carrier_does_not_hold_others(
    engine: Engine, tmp_path: Path, server: FakeCarrierServer, shop_id: int
) -> None:
    usps_id = add_shipment(engine, shop_id, USPS_NUMBERS[0], "usps", order_number="1")
    settings = _usps_settings(tmp_path, server, poll_interval=0.05)
    server.reply("GET", DHL_PATH, dhl_answer(PRE_TRANSIT, IN_TRANSIT))
    # USPS's next call slot is 20 s away, within the 60 s a round waits.
    with transaction(engine) as session:
        session.add(
            CarrierAccount(
                adapter="usps",
                credential="default",
                next_call_at=utcnow() + timedelta(seconds=20),
            )
        )
    poller = _usps_poller(engine, settings, interval=60)
    tracker = make_poller(engine, settings)

    async def scenario() -> tuple[float, str]:
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        try:
            waiting = await _until(
                lambda: _lease_owner(engine, usps_id) == poller.owner, 5
            )
            assert waiting
            dhl_id = await asyncio.to_thread(
                add_shipment, engine, shop_id, NUMBER, "dhl_paket", order_number="2"
            )
            started = time.monotonic()
            assert await _until(
                lambda: shipment_of(engine, dhl_id).status == "in_transit", 10
            )
            elapsed = time.monotonic() - started
            with pytest.raises(PollLeasedError) as busy:
                await poll_shipment(tracker, usps_id)
            return elapsed, str(busy.value)
        finally:
            stop.set()
            await task
            await poller.registry.aclose()
            await tracker.registry.aclose()

    elapsed, busy = asyncio.run(scenario())

    assert elapsed < 10
    assert f"shipment {usps_id} is being polled by {poller.owner}" in busy
    assert not [r for r in server.requests if r.path.startswith("/tracking/")]
    # Stopping handed the waiting shipment back, due at once, attempt uncounted.
    poll = poll_of(engine, usps_id)
    assert poll.lease_owner is None
    assert poll.attempts == 0
    assert poll.next_attempt_at < utcnow() + timedelta(seconds=15)


def test_estimate_counts_quota_and_pause(engine: Engine) -> None:
    with transaction(engine) as session:
        session.add(
            CarrierAccount(
                adapter="dhl",
                credential="default",
                quota_day=utcnow().date().isoformat(),
                quota_used=8,
            )
        )
    slots = carrier_accounts.estimate_slots(engine, "dhl", "default", 1.0, 10, 4)
    now = utcnow()
    assert [why for _, why in slots[:2]] == [carrier_accounts.RATE_LIMIT_WAIT] * 2
    assert slots[1][0] - slots[0][0] == timedelta(seconds=1)
    tomorrow = (now + timedelta(days=1)).date()
    assert [at.date() for at, _ in slots[2:]] == [tomorrow, tomorrow]
    assert slots[2][1] == "daily quota of 10 calls used up"

    until = now + timedelta(minutes=30)
    carrier_accounts.pause(engine, "dhl", "default", until, "rejected", "0" * 16)
    paused = carrier_accounts.estimate_slots(engine, "dhl", "default", 1.0, 0, 2)
    assert paused[0][0] == until
    assert paused[0][1] == "paused after a rejection: rejected"


# --- removed shops -------------------------------------------------------------


def test_removed_shop_not_polled(
    engine: Engine, tmp_path: Path, server: FakeCarrierServer, shop_id: int
) -> None:
    shipment_id = add_shipment(engine, shop_id, NUMBER, "dhl_paket")
    server.reply("GET", DHL_PATH, dhl_answer(PRE_TRANSIT, IN_TRANSIT))
    poller = make_poller(engine, make_settings(tmp_path, server))
    adopt_new_shipments(engine, timedelta(0))
    claimed = claim(
        engine, ShipmentPoll, PollState.ACTIVE, poller.owner, poller.lease, 10
    )
    assert len(claimed) == 1
    # The shop is removed while its poll is claimed.
    remove_shop(engine, "acme")

    async def poll_claimed() -> RoundResult:
        try:
            return await poller.poll_claimed(claimed)
        finally:
            await poller.registry.aclose()

    done = asyncio.run(poll_claimed())

    assert done.stopped == 1
    assert done.polled == 0
    assert server.requests == []
    assert done.not_polled[shipment_id].reason == "shop 'acme' is removed"
    poll = poll_of(engine, shipment_id)
    assert poll.state == PollState.STOPPED
    assert poll.lease_owner is None

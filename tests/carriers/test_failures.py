"""Every adapter against every failure a carrier API can produce.

Each failure must raise a subclass of CarrierError, so that the poller's one
``except CarrierError`` keeps the batch for the next round, and the adapter
must work again on the next request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import carrier_payloads as payloads
import pytest
from fake_carrier import FakeCarrierServer, Reply

from mailhandler.carriers import (
    CarrierAuthError,
    CarrierError,
    CarrierRateLimited,
    CarrierResponseError,
    CarrierUnavailable,
    Credentials,
    TrackingRequest,
)
from mailhandler.carriers.base import HttpAdapter
from mailhandler.carriers.dhl import DhlAdapter
from mailhandler.carriers.fedex import FedexAdapter
from mailhandler.carriers.seventeentrack import SeventeenTrackAdapter
from mailhandler.carriers.ups import UpsAdapter
from mailhandler.carriers.usps import UspsAdapter

pytestmark = pytest.mark.anyio

TIMEOUT = 0.3
API_KEY = Credentials(api_key="key-1")
OAUTH = Credentials(client_id="client-1", client_secret="secret-1")


@dataclass(frozen=True)
class Spec:
    """How to reach one adapter's tracking call on the fake server."""

    make: Callable[[str], HttpAdapter]
    carrier: str
    number: str
    method: str
    path: str
    normal: Any
    token_path: str | None = None


SPECS = {
    "dhl": Spec(
        lambda url: DhlAdapter(url, API_KEY, timeout=TIMEOUT),
        "dhl_paket",
        "00340434161094042557",
        "GET",
        "/track/shipments",
        payloads.dhl_shipments(),
    ),
    "ups": Spec(
        lambda url: UpsAdapter(url, OAUTH, timeout=TIMEOUT),
        "ups",
        "1Z023E2X0214323462",
        "GET",
        "/api/track/v1/details/1Z023E2X0214323462",
        payloads.ups_track(),
        "/security/v1/oauth/token",
    ),
    "fedex": Spec(
        lambda url: FedexAdapter(url, OAUTH, timeout=TIMEOUT),
        "fedex",
        "123456789012",
        "POST",
        "/track/v1/trackingnumbers",
        payloads.fedex_track(
            ("123456789012", payloads.fedex_track_result("123456789012"))
        ),
        "/oauth/token",
    ),
    "usps": Spec(
        lambda url: UspsAdapter(url, OAUTH, timeout=TIMEOUT),
        "usps",
        "9400111899223817576010",
        "GET",
        "/tracking/v3/tracking/9400111899223817576010",
        payloads.usps_tracking(),
        "/oauth2/v3/token",
    ),
    "seventeentrack": Spec(
        lambda url: SeventeenTrackAdapter(url, API_KEY, timeout=TIMEOUT),
        "gls",
        "ZA123456789",
        "POST",
        "/track/v2.2/gettrackinfo",
        payloads.seventeentrack_answer([payloads.seventeentrack_in_transit()]),
    ),
}


ADAPTERS: dict[str, type[HttpAdapter]] = {
    "dhl": DhlAdapter,
    "ups": UpsAdapter,
    "fedex": FedexAdapter,
    "usps": UspsAdapter,
    "seventeentrack": SeventeenTrackAdapter,
}


def http_date_in(seconds: int) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


# name -> (reply to the tracking call, expected error class)
FAILURES: dict[str, tuple[Reply, type[CarrierError]]] = {
    "401": (Reply(status=401, json={"message": "invalid key"}), CarrierAuthError),
    "403": (Reply(status=403, json={"message": "blocked"}), CarrierAuthError),
    "429 seconds": (
        Reply(status=429, json={}, headers={"Retry-After": "30"}),
        CarrierRateLimited,
    ),
    "500": (Reply(status=500, body=b"<html>oops</html>"), CarrierUnavailable),
    "503": (Reply(status=503, json={"detail": "maintenance"}), CarrierUnavailable),
    "timeout": (Reply(json={}, delay=1.0), CarrierUnavailable),
    "malformed json": (Reply(body=b'{"shipments": [{'), CarrierResponseError),
    "not json": (Reply(body=b"\xff\xfe garbage"), CarrierResponseError),
    "wrong shape": (Reply(json={"unexpected": ["shape"]}), CarrierResponseError),
    "wrong types": (Reply(json=[1, 2, 3]), CarrierResponseError),
}


def program(server: FakeCarrierServer, spec: Spec, reply: Reply) -> None:
    if spec.token_path:
        server.reply("POST", spec.token_path, Reply(json=payloads.TOKEN))
    server.reply(spec.method, spec.path, reply)


def request(spec: Spec) -> TrackingRequest:
    return TrackingRequest(number=spec.number, carrier=spec.carrier, shipment_id=7)


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("adapter_name", SPECS)
async def test_failure_raises_carrier_error_then_recovers(
    carrier_server: FakeCarrierServer, adapter_name: str, failure: str
) -> None:
    spec = SPECS[adapter_name]
    reply, expected = FAILURES[failure]
    program(carrier_server, spec, reply)

    async with spec.make(carrier_server.url) as adapter:
        started = time.monotonic()
        with pytest.raises(expected) as caught:
            await adapter.track([request(spec)])
        elapsed = time.monotonic() - started

        assert isinstance(caught.value, CarrierError)
        assert caught.value.adapter == adapter.name
        assert elapsed < 2.0
        program(carrier_server, spec, Reply(json=spec.normal))
        results = await adapter.track([request(spec)])

    assert [result.number for result in results] == [spec.number]
    assert results[0].found


@pytest.mark.parametrize("adapter_name", SPECS)
async def test_429_retry_after_seconds(
    carrier_server: FakeCarrierServer, adapter_name: str
) -> None:
    spec = SPECS[adapter_name]
    program(carrier_server, spec, Reply(status=429, headers={"Retry-After": "30"}))

    async with spec.make(carrier_server.url) as adapter:
        with pytest.raises(CarrierRateLimited) as caught:
            await adapter.track([request(spec)])

    assert caught.value.retry_after == 30.0


@pytest.mark.parametrize("adapter_name", SPECS)
async def test_429_retry_after_http_date(
    carrier_server: FakeCarrierServer, adapter_name: str
) -> None:
    spec = SPECS[adapter_name]
    header = {"Retry-After": http_date_in(120)}
    program(carrier_server, spec, Reply(status=429, headers=header))

    async with spec.make(carrier_server.url) as adapter:
        with pytest.raises(CarrierRateLimited) as caught:
            await adapter.track([request(spec)])

    assert caught.value.retry_after is not None
    assert 100 <= caught.value.retry_after <= 120


@pytest.mark.parametrize("adapter_name", SPECS)
async def test_401_names_the_credential(
    carrier_server: FakeCarrierServer, adapter_name: str
) -> None:
    spec = SPECS[adapter_name]
    program(carrier_server, spec, Reply(status=401, json={}))

    async with spec.make(carrier_server.url) as adapter:
        with pytest.raises(CarrierAuthError) as caught:
            await adapter.track([request(spec)])

    assert caught.value.credential == "default"
    assert caught.value.status == 401
    assert "secret-1" not in str(caught.value)
    assert "key-1" not in str(caught.value)


@pytest.mark.parametrize("adapter_name", SPECS)
async def test_connection_refused_is_unavailable(
    closed_port_url: str, adapter_name: str
) -> None:
    spec = SPECS[adapter_name]

    async with spec.make(closed_port_url) as adapter:
        with pytest.raises(CarrierUnavailable):
            await adapter.track([request(spec)])


@pytest.mark.parametrize("adapter_name", SPECS)
async def test_missing_credentials_is_auth_error(
    carrier_server: FakeCarrierServer, adapter_name: str
) -> None:
    spec = SPECS[adapter_name]
    kind = ADAPTERS[adapter_name]

    async with kind(carrier_server.url) as adapter:
        with pytest.raises(CarrierAuthError):
            await adapter.track([request(spec)])

    assert carrier_server.requests == []


@pytest.mark.parametrize("adapter_name", SPECS)
async def test_batch_larger_than_max_is_rejected(
    carrier_server: FakeCarrierServer, adapter_name: str
) -> None:
    spec = SPECS[adapter_name]
    async with spec.make(carrier_server.url) as adapter:
        batch = [
            TrackingRequest(number=f"N{i}", carrier=spec.carrier)
            for i in range(adapter.max_batch + 1)
        ]
        with pytest.raises(ValueError, match="at most"):
            await adapter.track(batch)


@pytest.mark.parametrize("adapter_name", SPECS)
async def test_empty_batch_sends_nothing(
    carrier_server: FakeCarrierServer, adapter_name: str
) -> None:
    spec = SPECS[adapter_name]
    async with spec.make(carrier_server.url) as adapter:
        assert await adapter.track([]) == []

    assert carrier_server.requests == []

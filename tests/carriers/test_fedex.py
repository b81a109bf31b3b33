"""FedEx Track API against a fake FedEx on loopback."""

from __future__ import annotations

from datetime import UTC, date, datetime

import carrier_payloads as payloads
import pytest
from fake_carrier import FakeCarrierServer, Reply

from mailhandler.carriers import CarrierResponseError, Credentials, TrackingRequest
from mailhandler.carriers.fedex import FedexAdapter, map_status
from mailhandler.store.models import ShipmentStatus as S

pytestmark = pytest.mark.anyio

PATH = "/track/v1/trackingnumbers"
TOKEN_PATH = "/oauth/token"
FIRST, SECOND, THIRD = "123456789012", "123456789013", "123456789014"


def adapter(url: str) -> FedexAdapter:
    return FedexAdapter(url, Credentials(client_id="fx-id", client_secret="fx-secret"))


def requests(*numbers: str) -> list[TrackingRequest]:
    return [TrackingRequest(number, "fedex") for number in numbers]


async def test_fedex_normal_tracking(carrier_server: FakeCarrierServer) -> None:
    carrier_server.reply("POST", TOKEN_PATH, Reply(json=payloads.TOKEN))
    body = payloads.fedex_track((FIRST, payloads.fedex_track_result(FIRST)))
    carrier_server.reply("POST", PATH, Reply(json=body))

    async with adapter(carrier_server.url) as fedex:
        [result] = await fedex.track(requests(FIRST))

    assert result.found
    assert result.status == S.DELIVERED
    assert result.raw_code == "DL"
    assert result.raw_text == "Delivered"
    assert result.estimated_delivery == date(2026, 9, 20)
    assert [e.status for e in result.events] == [
        S.PENDING,
        S.IN_TRANSIT,
        S.OUT_FOR_DELIVERY,
        S.DELIVERED,
    ]
    delivered = result.events[-1]
    assert delivered.occurred_at == datetime(2026, 9, 20, 20, 2, tzinfo=UTC)
    assert delivered.raw_code == "DL"
    assert delivered.location == "MEMPHIS, TN, US"


async def test_fedex_batch_mixes_found_not_found_and_missing(
    carrier_server: FakeCarrierServer,
) -> None:
    carrier_server.reply("POST", TOKEN_PATH, Reply(json=payloads.TOKEN))
    body = payloads.fedex_track(
        (FIRST, payloads.fedex_track_result(FIRST)),
        (SECOND, payloads.fedex_not_found(SECOND)),
    )
    carrier_server.reply("POST", PATH, Reply(json=body))

    async with adapter(carrier_server.url) as fedex:
        results = await fedex.track(requests(FIRST, SECOND, THIRD))

    assert [r.number for r in results] == [FIRST, SECOND, THIRD]
    assert [r.found for r in results] == [True, False, False]
    assert results[1].error is None
    assert results[1].raw_text is not None
    assert results[1].raw_text.startswith("TRACKING.TRACKINGNUMBER.NOTFOUND")
    assert results[2].raw_text == "missing from the fedex response"


async def test_fedex_sends_one_batch_request(carrier_server: FakeCarrierServer) -> None:
    carrier_server.reply("POST", TOKEN_PATH, Reply(json=payloads.TOKEN))
    carrier_server.reply("POST", PATH, Reply(json=payloads.fedex_track()))

    async with adapter(carrier_server.url) as fedex:
        await fedex.track(requests(FIRST, SECOND, FIRST))

    [token_request] = carrier_server.requests_to("POST", TOKEN_PATH)
    assert b"grant_type=client_credentials" in token_request.body
    assert b"client_id=fx-id" in token_request.body
    [sent] = carrier_server.requests_to("POST", PATH)
    assert sent.headers["authorization"] == "Bearer token-1"
    assert sent.headers["x-locale"] == "en_US"
    numbers = [
        info["trackingNumberInfo"]["trackingNumber"]
        for info in sent.json()["trackingInfo"]
    ]
    assert numbers == [FIRST, SECOND]
    assert sent.json()["includeDetailedScans"] is True


async def test_fedex_invalid_number_alone_is_a_result(
    carrier_server: FakeCarrierServer,
) -> None:
    carrier_server.reply("POST", TOKEN_PATH, Reply(json=payloads.TOKEN))
    errors = {
        "errors": [{"code": "TRACKING.TRACKINGNUMBER.INVALID", "message": "Invalid"}]
    }
    carrier_server.reply("POST", PATH, Reply(status=400, json=errors))

    async with adapter(carrier_server.url) as fedex:
        [result] = await fedex.track(requests("ABC"))
        with pytest.raises(CarrierResponseError, match="INVALID"):
            await fedex.track(requests("ABC", FIRST))

    assert not result.found
    assert result.error == "TRACKING.TRACKINGNUMBER.INVALID: Invalid"


async def test_fedex_duplicate_results_take_latest_scan(
    carrier_server: FakeCarrierServer,
) -> None:
    carrier_server.reply("POST", TOKEN_PATH, Reply(json=payloads.TOKEN))
    old = payloads.fedex_track_result(FIRST)
    old["latestStatusDetail"] = {"code": "IT", "description": "In transit"}
    old["scanEvents"] = [
        payloads.fedex_scan("2024-01-02T10:00:00-05:00", "IT", "In transit")
    ]
    body = {
        "output": {
            "completeTrackResults": [
                {
                    "trackingNumber": FIRST,
                    "trackResults": [old, payloads.fedex_track_result(FIRST)],
                }
            ]
        }
    }
    carrier_server.reply("POST", PATH, Reply(json=body))

    async with adapter(carrier_server.url) as fedex:
        [result] = await fedex.track(requests(FIRST))

    assert result.status == S.DELIVERED


@pytest.mark.parametrize(
    ("code", "derived", "expected"),
    [
        ("OC", None, S.PENDING),
        ("PU", None, S.IN_TRANSIT),
        ("AR", None, S.IN_TRANSIT),
        ("OD", None, S.OUT_FOR_DELIVERY),
        ("HP", None, S.AVAILABLE_FOR_PICKUP),
        ("DE", None, S.DELIVERY_FAILED),
        ("SE", None, S.EXCEPTION),
        ("RS", None, S.RETURNED),
        ("DL", None, S.DELIVERED),
        ("XX", "IT", S.IN_TRANSIT),
        ("XX", None, S.UNKNOWN),
    ],
)
def test_fedex_status_mapping(code: str, derived: str | None, expected: S) -> None:
    assert map_status(code, derived) == expected

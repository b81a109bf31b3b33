"""UPS Track API against a fake UPS on loopback."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime

import carrier_payloads as payloads
import pytest
from fake_carrier import FakeCarrierServer, Reply

from mailhandler.carriers import Credentials, TrackingRequest
from mailhandler.carriers.ups import UpsAdapter, map_status
from mailhandler.store.models import ShipmentStatus as S

pytestmark = pytest.mark.anyio

NUMBER = "1Z023E2X0214323462"
PATH = f"/api/track/v1/details/{NUMBER}"
TOKEN_PATH = "/security/v1/oauth/token"


def adapter(url: str) -> UpsAdapter:
    return UpsAdapter(url, Credentials(client_id="ups-id", client_secret="ups-secret"))


def token_reply(server: FakeCarrierServer) -> None:
    # UPS sends expires_in as a string.
    token = {"access_token": "ups-token", "token_type": "Bearer", "expires_in": "14399"}
    server.reply("POST", TOKEN_PATH, Reply(json=token))


async def test_ups_normal_tracking(carrier_server: FakeCarrierServer) -> None:
    token_reply(carrier_server)
    carrier_server.reply("GET", PATH, Reply(json=payloads.ups_track(NUMBER)))

    async with adapter(carrier_server.url) as ups:
        [result] = await ups.track([TrackingRequest(NUMBER, "ups")])

    assert result.found
    assert result.status == S.OUT_FOR_DELIVERY
    assert result.raw_code == "I/OT"
    assert result.estimated_delivery == date(2026, 9, 21)
    assert [e.status for e in result.events] == [
        S.PENDING,
        S.IN_TRANSIT,
        S.OUT_FOR_DELIVERY,
    ]
    arrived = result.events[1]
    # gmtTime "74700" is 07:47:00 UTC.
    assert arrived.occurred_at == datetime(2026, 9, 19, 7, 47, tzinfo=UTC)
    assert arrived.raw_code == "I/AR"
    assert arrived.raw_text == "Arrived at Facility"
    assert arrived.location == "Wayne, NJ, US"


async def test_ups_sends_token_and_headers(carrier_server: FakeCarrierServer) -> None:
    token_reply(carrier_server)
    carrier_server.reply("GET", PATH, Reply(json=payloads.ups_track(NUMBER)))

    async with adapter(carrier_server.url) as ups:
        await ups.track([TrackingRequest(NUMBER, "ups")])
        await ups.track([TrackingRequest(NUMBER, "ups")])

    [token_request] = carrier_server.requests_to("POST", TOKEN_PATH)
    expected = base64.b64encode(b"ups-id:ups-secret").decode()
    assert token_request.headers["authorization"] == f"Basic {expected}"
    assert token_request.body == b"grant_type=client_credentials"
    first, second = carrier_server.requests_to("GET", PATH)
    assert first.headers["authorization"] == "Bearer ups-token"
    assert first.headers["transactionsrc"] == "bcctrack"
    assert first.headers["transid"] != second.headers["transid"]
    assert len(first.headers["transid"]) <= 32
    assert first.query["locale"] == ["en_US"]


async def test_ups_not_found(carrier_server: FakeCarrierServer) -> None:
    token_reply(carrier_server)
    body = {
        "response": {
            "errors": [{"code": "TW0001", "message": "Tracking Information Not Found"}]
        }
    }
    carrier_server.reply("GET", PATH, Reply(status=404, json=body))

    async with adapter(carrier_server.url) as ups:
        [result] = await ups.track([TrackingRequest(NUMBER, "ups")])

    assert not result.found
    assert result.error is None
    assert result.raw_text == "TW0001: Tracking Information Not Found"


async def test_ups_warning_without_package_is_not_found(
    carrier_server: FakeCarrierServer,
) -> None:
    token_reply(carrier_server)
    body = {
        "trackResponse": {
            "shipment": [
                {
                    "inquiryNumber": NUMBER,
                    "warnings": [
                        {"code": "TW0001", "message": "Tracking Information Not Found"}
                    ],
                }
            ]
        }
    }
    carrier_server.reply("GET", PATH, Reply(json=body))

    async with adapter(carrier_server.url) as ups:
        [result] = await ups.track([TrackingRequest(NUMBER, "ups")])

    assert not result.found
    assert result.raw_text == "Tracking Information Not Found"


async def test_ups_multi_package_picks_the_number(
    carrier_server: FakeCarrierServer,
) -> None:
    token_reply(carrier_server)
    delivered = [payloads.ups_activity(("20260920", "150000"), "D", "KB", "Delivered")]
    body = payloads.ups_track("1Z0000000000000001")
    body["trackResponse"]["shipment"][0]["package"].append(
        payloads.ups_package(NUMBER, delivered)
    )
    carrier_server.reply("GET", PATH, Reply(json=body))

    async with adapter(carrier_server.url) as ups:
        [result] = await ups.track([TrackingRequest(NUMBER, "ups")])

    assert result.status == S.DELIVERED
    assert len(result.events) == 1


@pytest.mark.parametrize(
    ("status_type", "text", "expected"),
    [
        ("M", "Shipper created a label", S.PENDING),
        ("P", "Pickup Scan", S.IN_TRANSIT),
        ("I", "Departed from Facility", S.IN_TRANSIT),
        ("I", "Out For Delivery Today", S.OUT_FOR_DELIVERY),
        (
            "I",
            "Your package is at the UPS Access Point and ready for pickup",
            S.AVAILABLE_FOR_PICKUP,
        ),
        ("I", "Returning to Sender: In Transit", S.RETURNED),
        ("I", "The package is being returned to the sender", S.RETURNED),
        ("O", "Out For Delivery", S.OUT_FOR_DELIVERY),
        (
            "X",
            "The receiver was not available for delivery. We'll make a second attempt",
            S.DELIVERY_FAILED,
        ),
        ("X", "Severe weather conditions have delayed delivery", S.EXCEPTION),
        ("RS", "Returned to shipper", S.RETURNED),
        ("D", "Delivered", S.DELIVERED),
        (
            "D",
            "Delivered to UPS Access Point. Ready for customer pickup",
            S.AVAILABLE_FOR_PICKUP,
        ),
        ("MV", "Voided", S.UNKNOWN),
        ("ZZ", "New type", S.UNKNOWN),
    ],
)
def test_ups_status_mapping(status_type: str, text: str, expected: S) -> None:
    assert map_status(status_type, text) == expected

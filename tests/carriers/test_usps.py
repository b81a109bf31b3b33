"""USPS Tracking v3 against a fake USPS on loopback."""

from __future__ import annotations

from datetime import UTC, date, datetime

import carrier_payloads as payloads
import pytest
from fake_carrier import FakeCarrierServer, Reply

from mailhandler.carriers import Credentials, TrackingRequest
from mailhandler.carriers.usps import UspsAdapter, event_time, map_category, map_event
from mailhandler.store.models import ShipmentStatus as S

pytestmark = pytest.mark.anyio

NUMBER = "9400111899223817576010"
PATH = f"/tracking/v3/tracking/{NUMBER}"
TOKEN_PATH = "/oauth2/v3/token"


def adapter(url: str) -> UspsAdapter:
    return UspsAdapter(
        url, Credentials(client_id="usps-id", client_secret="usps-secret")
    )


async def test_usps_normal_tracking(carrier_server: FakeCarrierServer) -> None:
    carrier_server.reply("POST", TOKEN_PATH, Reply(json=payloads.TOKEN))
    carrier_server.reply("GET", PATH, Reply(json=payloads.usps_tracking(NUMBER)))

    async with adapter(carrier_server.url) as usps:
        [result] = await usps.track([TrackingRequest(NUMBER, "usps")])

    assert result.found
    assert result.status == S.DELIVERED
    assert result.raw_code == "Delivered"
    assert result.estimated_delivery == date(2026, 9, 20)
    assert [e.status for e in result.events] == [
        S.IN_TRANSIT,
        S.IN_TRANSIT,
        S.OUT_FOR_DELIVERY,
        S.DELIVERED,
    ]
    delivered = result.events[-1]
    assert delivered.occurred_at == datetime(2026, 9, 20, 21, 3, tzinfo=UTC)
    assert delivered.raw_code == "01"
    assert delivered.raw_text == "Delivered, Parcel Locker"
    assert delivered.location == "PHOENIX, AZ"


async def test_usps_token_is_json(carrier_server: FakeCarrierServer) -> None:
    carrier_server.reply("POST", TOKEN_PATH, Reply(json=payloads.TOKEN))
    carrier_server.reply("GET", PATH, Reply(json=payloads.usps_tracking(NUMBER)))

    async with adapter(carrier_server.url) as usps:
        await usps.track([TrackingRequest(NUMBER, "usps")])

    [token_request] = carrier_server.requests_to("POST", TOKEN_PATH)
    assert token_request.json() == {
        "client_id": "usps-id",
        "client_secret": "usps-secret",
        "grant_type": "client_credentials",
    }
    [sent] = carrier_server.requests_to("GET", PATH)
    assert sent.query["expand"] == ["DETAIL"]
    assert sent.headers["authorization"] == "Bearer token-1"


async def test_usps_not_found(carrier_server: FakeCarrierServer) -> None:
    carrier_server.reply("POST", TOKEN_PATH, Reply(json=payloads.TOKEN))
    body = {
        "apiVersion": "3.0.0",
        "error": {
            "code": "404",
            "message": "Tracking number not found",
            "errors": [
                {"status": "404", "code": "1001", "title": "Not found", "detail": None}
            ],
        },
    }
    carrier_server.reply("GET", PATH, Reply(status=404, json=body))

    async with adapter(carrier_server.url) as usps:
        [result] = await usps.track([TrackingRequest(NUMBER, "usps")])

    assert not result.found
    assert result.raw_text == "Tracking number not found; Not found"


def test_usps_event_time_from_local_and_offset() -> None:
    raw = payloads.usps_event("", "07", "Arrived")
    raw["GMTTimestamp"] = None
    raw["eventTimestamp"] = "2026-09-20T14:03:00"
    raw["GMTOffset"] = "-7:00"
    from mailhandler.carriers.usps import _Event

    assert event_time(_Event.model_validate(raw)) == datetime(
        2026, 9, 20, 21, 3, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("category", "text", "expected"),
    [
        ("Pre-Shipment", "Shipping Label Created", S.PENDING),
        ("Accepted", "USPS in possession of item", S.IN_TRANSIT),
        ("In Transit", "Departed USPS Regional Facility", S.IN_TRANSIT),
        ("Out for Delivery", "Out for Delivery", S.OUT_FOR_DELIVERY),
        ("Available for Pickup", "Available for Pickup", S.AVAILABLE_FOR_PICKUP),
        (
            "Delivery Attempt",
            "Notice Left (No Authorized Recipient Available)",
            S.DELIVERY_FAILED,
        ),
        ("Alert", "Delivery Exception, Animal Interference", S.EXCEPTION),
        ("Alert", "Return to Sender Processed", S.RETURNED),
        ("Delivered", "Delivered, In/At Mailbox", S.DELIVERED),
        ("Something New", "Arrived at USPS Facility", S.IN_TRANSIT),
        ("Something New", "Unknown words", S.UNKNOWN),
    ],
)
def test_usps_category_mapping(category: str, text: str, expected: S) -> None:
    assert map_category(category, text) == expected


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        ("01", "Delivered, Front Door/Porch", S.DELIVERED),
        ("OF", "Out for Delivery", S.OUT_FOR_DELIVERY),
        ("07", "Arrived at Post Office", S.IN_TRANSIT),
        ("MA", "Shipping Label Created, USPS Awaiting Item", S.PENDING),
        ("10", "Departed USPS Regional Facility", S.IN_TRANSIT),
        ("02", "Notice Left (No Authorized Recipient Available)", S.DELIVERY_FAILED),
        ("09", "Returned to Sender", S.RETURNED),
        ("ZZ", "Unreadable", S.UNKNOWN),
    ],
)
def test_usps_event_mapping(code: str, text: str, expected: S) -> None:
    assert map_event(code, text) == expected

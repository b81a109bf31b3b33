"""DHL Shipment Tracking - Unified against a fake DHL on loopback."""

from __future__ import annotations

from datetime import UTC, date, datetime

import carrier_payloads as payloads
import pytest
from fake_carrier import FakeCarrierServer, Reply

from mailhandler.carriers import Credentials, TrackingRequest
from mailhandler.carriers.dhl import DhlAdapter, map_status
from mailhandler.store.models import ShipmentStatus as S

pytestmark = pytest.mark.anyio

NUMBER = "00340434161094042557"
PATH = "/track/shipments"


def adapter(url: str) -> DhlAdapter:
    return DhlAdapter(url, Credentials(api_key="dhl-key"), timeout=1.0)


async def test_dhl_normal_tracking(carrier_server: FakeCarrierServer) -> None:
    carrier_server.reply("GET", PATH, Reply(json=payloads.dhl_shipments(NUMBER)))

    async with adapter(carrier_server.url) as dhl:
        [result] = await dhl.track([TrackingRequest(NUMBER, "dhl_paket")])

    assert result.found
    assert result.number == NUMBER
    assert result.status == S.OUT_FOR_DELIVERY
    assert result.raw_code == "transit"
    assert result.estimated_delivery == date(2026, 9, 20)
    assert [e.status for e in result.events] == [
        S.PENDING,
        S.IN_TRANSIT,
        S.OUT_FOR_DELIVERY,
    ]
    first = result.events[0]
    assert first.occurred_at == datetime(2026, 9, 18, 12, 0, tzinfo=UTC)
    assert first.raw_code == "pre-transit"
    assert first.raw_text is not None
    assert first.raw_text.startswith("The instruction data")
    assert first.location == "Bonn, DE"


@pytest.mark.parametrize(
    ("carrier", "service"),
    [
        ("dhl_paket", "parcel-de"),
        ("dhl_express", "express"),
        ("dhl_ecommerce", "ecommerce"),
    ],
)
async def test_dhl_sends_service_and_key(
    carrier_server: FakeCarrierServer, carrier: str, service: str
) -> None:
    carrier_server.reply("GET", PATH, Reply(json=payloads.dhl_shipments(NUMBER)))

    async with adapter(carrier_server.url) as dhl:
        await dhl.track([TrackingRequest(NUMBER, carrier)])

    [sent] = carrier_server.requests_to("GET", PATH)
    assert sent.query["trackingNumber"] == [NUMBER]
    assert sent.query["service"] == [service]
    assert sent.query["language"] == ["en"]
    assert sent.headers["dhl-api-key"] == "dhl-key"


async def test_dhl_not_found(carrier_server: FakeCarrierServer) -> None:
    problem = {
        "title": "No result found",
        "detail": "No shipment with given tracking number found.",
        "status": 404,
        "instance": f"/shipment/{NUMBER}",
    }
    carrier_server.reply("GET", PATH, Reply(status=404, json=problem))

    async with adapter(carrier_server.url) as dhl:
        [result] = await dhl.track(
            [TrackingRequest(NUMBER, "dhl_paket", shipment_id=3)]
        )

    assert not result.found
    assert result.status == S.PENDING
    assert result.events == ()
    assert result.error is None
    assert result.raw_text == "No shipment with given tracking number found."


async def test_dhl_400_is_a_rejected_number(carrier_server: FakeCarrierServer) -> None:
    problem = {
        "title": "Bad request",
        "detail": "Invalid trackingNumber",
        "status": 400,
    }
    carrier_server.reply("GET", PATH, Reply(status=400, json=problem))

    async with adapter(carrier_server.url) as dhl:
        [result] = await dhl.track([TrackingRequest("X", "dhl_paket")])

    assert not result.found
    assert result.error == "Invalid trackingNumber"


async def test_dhl_picks_the_shipment_of_the_number(
    carrier_server: FakeCarrierServer,
) -> None:
    other = payloads.dhl_shipments("OTHER123")["shipments"][0]
    wanted = payloads.dhl_shipments(NUMBER)["shipments"][0]
    wanted["status"] = payloads.dhl_event(
        "2026-09-20T12:00:00+02:00", "delivered", "The shipment has been delivered"
    )
    carrier_server.reply("GET", PATH, Reply(json={"shipments": [other, wanted]}))

    async with adapter(carrier_server.url) as dhl:
        [result] = await dhl.track([TrackingRequest(NUMBER, "dhl_paket")])

    assert result.status == S.DELIVERED


async def test_dhl_empty_shipments_is_not_found(
    carrier_server: FakeCarrierServer,
) -> None:
    carrier_server.reply("GET", PATH, Reply(json={"shipments": []}))

    async with adapter(carrier_server.url) as dhl:
        [result] = await dhl.track([TrackingRequest(NUMBER, "dhl_paket")])

    assert not result.found


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        ("pre-transit", "Label created", S.PENDING),
        ("transit", "Arrived at the parcel center", S.IN_TRANSIT),
        ("transit", "Out for delivery", S.OUT_FOR_DELIVERY),
        (
            "transit",
            "Die Sendung wurde in das Zustellfahrzeug geladen, in Zustellung",
            S.OUT_FOR_DELIVERY,
        ),
        (
            "transit",
            "The shipment is ready for pickup at the Packstation",
            S.AVAILABLE_FOR_PICKUP,
        ),
        ("transit", "The shipment is being returned to the sender", S.RETURNED),
        (
            "failure",
            "Delivery attempt failed, recipient not at home",
            S.DELIVERY_FAILED,
        ),
        ("failure", "Empfänger nicht angetroffen", S.DELIVERY_FAILED),
        ("failure", "Damaged in transit", S.EXCEPTION),
        ("failure", "Returned to sender: refused", S.RETURNED),
        ("delivered", "Delivered to recipient", S.DELIVERED),
        ("delivered", "Zurück an den Absender zugestellt", S.RETURNED),
        ("unknown", "Something", S.UNKNOWN),
        ("new-code", "Something", S.UNKNOWN),
        (None, None, S.UNKNOWN),
    ],
)
def test_dhl_status_mapping(code: str | None, text: str | None, expected: S) -> None:
    assert map_status(code, text) == expected

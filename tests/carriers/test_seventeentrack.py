"""17TRACK v2.2 against a fake 17TRACK on loopback."""

from __future__ import annotations

from datetime import UTC, date, datetime

import carrier_payloads as payloads
import pytest
from fake_carrier import FakeCarrierServer, Reply

from mailhandler.carriers import (
    CarrierAuthError,
    CarrierRateLimited,
    Credentials,
    TrackingRequest,
)
from mailhandler.carriers.seventeentrack import SeventeenTrackAdapter, map_status
from mailhandler.store.models import ShipmentStatus as S

pytestmark = pytest.mark.anyio

INFO = "/track/v2.2/gettrackinfo"
REGISTER = "/track/v2.2/register"
NUMBER = "ZA123456789"


def adapter(url: str) -> SeventeenTrackAdapter:
    return SeventeenTrackAdapter(url, Credentials(api_key="17-key"))


async def test_seventeentrack_normal_tracking(
    carrier_server: FakeCarrierServer,
) -> None:
    answer = payloads.seventeentrack_answer(
        [payloads.seventeentrack_in_transit(NUMBER)]
    )
    carrier_server.reply("POST", INFO, Reply(json=answer))

    async with adapter(carrier_server.url) as aggregator:
        [result] = await aggregator.track([TrackingRequest(NUMBER, "gls")])

    assert result.found
    assert result.status == S.IN_TRANSIT
    assert result.raw_code == "InTransit_Arrival"
    assert result.estimated_delivery == date(2026, 9, 23)
    assert [e.raw_code for e in result.events] == [
        "InTransit_PickedUp",
        "InTransit_Arrival",
    ]
    assert result.events[0].occurred_at == datetime(2026, 9, 19, 15, 10, tzinfo=UTC)
    assert result.events[0].raw_text == "The parcel has been picked up."
    assert result.events[0].location == "Neuenstein, DE"
    [sent] = carrier_server.requests_to("POST", INFO)
    assert sent.headers["17token"] == "17-key"
    assert sent.json() == [{"number": NUMBER}]


async def test_seventeentrack_registers_unknown_numbers(
    carrier_server: FakeCarrierServer,
) -> None:
    other = "ZB987654321"
    answer = payloads.seventeentrack_answer(
        [payloads.seventeentrack_in_transit(NUMBER)],
        [
            payloads.seventeentrack_rejected(
                other,
                -18019902,
                f"The tracking number '{other}' does not register, "
                "please register first.",
            )
        ],
    )
    carrier_server.reply("POST", INFO, Reply(json=answer))
    registered = {
        "code": 0,
        "data": {"accepted": [{"number": other, "carrier": 3011}], "rejected": []},
    }
    carrier_server.reply("POST", REGISTER, Reply(json=registered))

    async with adapter(carrier_server.url) as aggregator:
        results = await aggregator.track(
            [TrackingRequest(NUMBER, "gls"), TrackingRequest(other, "other")]
        )

    assert [r.number for r in results] == [NUMBER, other]
    assert results[0].found
    assert not results[1].found
    assert results[1].error is None
    [register] = carrier_server.requests_to("POST", REGISTER)
    assert register.json() == [{"number": other}]


async def test_seventeentrack_not_found_kinds(
    carrier_server: FakeCarrierServer,
) -> None:
    no_data = payloads.seventeentrack_accepted("N1", "NotFound", "NotFound_Other", [])
    answer = payloads.seventeentrack_answer(
        [no_data],
        [
            payloads.seventeentrack_rejected(
                "N2", -18019909, "No tracking information at this time."
            ),
            payloads.seventeentrack_rejected(
                "N3", -18019903, "Carrier cannot be detected."
            ),
        ],
    )
    carrier_server.reply("POST", INFO, Reply(json=answer))

    async with adapter(carrier_server.url) as aggregator:
        results = await aggregator.track(
            [TrackingRequest(n, "other") for n in ("N1", "N2", "N3")]
        )

    assert [r.found for r in results] == [False, False, False]
    assert results[0].error is None
    assert results[1].error is None
    assert results[2].error == "17TRACK code -18019903: Carrier cannot be detected."


async def test_seventeentrack_returned_sub_status(
    carrier_server: FakeCarrierServer,
) -> None:
    returning = payloads.seventeentrack_accepted(
        NUMBER,
        "Exception",
        "Exception_Returning",
        [
            payloads.seventeentrack_event(
                "2026-09-21T08:00:00Z", "Exception_Returning", "Returned to sender."
            )
        ],
    )
    carrier_server.reply(
        "POST", INFO, Reply(json=payloads.seventeentrack_answer([returning]))
    )

    async with adapter(carrier_server.url) as aggregator:
        [result] = await aggregator.track([TrackingRequest(NUMBER, "gls")])

    assert result.status == S.RETURNED
    assert result.events[0].status == S.RETURNED


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (-18010002, CarrierAuthError),
        (-18019908, CarrierAuthError),
        (-18019907, CarrierRateLimited),
    ],
)
async def test_seventeentrack_account_codes_raise(
    carrier_server: FakeCarrierServer, code: int, error: type[Exception]
) -> None:
    body = {"code": code, "data": {"errors": [{"code": code, "message": "refused"}]}}
    carrier_server.reply("POST", INFO, Reply(json=body))

    async with adapter(carrier_server.url) as aggregator:
        with pytest.raises(error, match=str(code)):
            await aggregator.track([TrackingRequest(NUMBER, "gls")])


@pytest.mark.parametrize(
    ("status", "sub_status", "expected"),
    [
        ("NotFound", None, S.PENDING),
        ("InfoReceived", None, S.PENDING),
        ("InTransit", "InTransit_CustomsProcessing", S.IN_TRANSIT),
        ("OutForDelivery", None, S.OUT_FOR_DELIVERY),
        ("AvailableForPickup", None, S.AVAILABLE_FOR_PICKUP),
        ("DeliveryFailure", "DeliveryFailure_NoBody", S.DELIVERY_FAILED),
        ("Exception", "Exception_Lost", S.EXCEPTION),
        ("Exception", "Exception_Returned", S.RETURNED),
        ("Delivered", None, S.DELIVERED),
        ("Expired", None, S.EXPIRED),
        (None, "InTransit_PickedUp", S.IN_TRANSIT),
        (None, "Exception_Returning", S.RETURNED),
        ("Unheard", None, S.UNKNOWN),
    ],
)
def test_seventeentrack_status_mapping(
    status: str | None, sub_status: str | None, expected: S
) -> None:
    assert map_status(status, sub_status) == expected

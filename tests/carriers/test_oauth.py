"""Token fetching, caching, expiry and the retry on 401, on UPS and FedEx."""

from __future__ import annotations

import carrier_payloads as payloads
import pytest
from fake_carrier import FakeCarrierServer, Reply

from mailhandler.carriers import CarrierAuthError, Credentials, TrackingRequest
from mailhandler.carriers.fedex import FedexAdapter
from mailhandler.carriers.oauth import EXPIRY_MARGIN

pytestmark = pytest.mark.anyio

TOKEN_PATH = "/oauth/token"
PATH = "/track/v1/trackingnumbers"
NUMBER = "123456789012"
DEFAULT = Credentials(client_id="fx-id", client_secret="fx-secret")


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tokens(*values: str, expires_in: int = 3599) -> list[Reply]:
    return [
        Reply(
            json={"access_token": v, "token_type": "Bearer", "expires_in": expires_in}
        )
        for v in values
    ]


def found() -> Reply:
    return Reply(
        json=payloads.fedex_track((NUMBER, payloads.fedex_track_result(NUMBER)))
    )


def bearer_tokens(server: FakeCarrierServer) -> list[str]:
    return [r.headers["authorization"] for r in server.requests_to("POST", PATH)]


async def test_token_is_cached(carrier_server: FakeCarrierServer) -> None:
    carrier_server.reply("POST", TOKEN_PATH, *tokens("t1", "t2"))
    carrier_server.reply("POST", PATH, found())

    async with FedexAdapter(carrier_server.url, DEFAULT) as fedex:
        for _ in range(3):
            await fedex.track([TrackingRequest(NUMBER, "fedex")])

    assert len(carrier_server.requests_to("POST", TOKEN_PATH)) == 1
    assert bearer_tokens(carrier_server) == ["Bearer t1"] * 3


async def test_token_renewed_before_expiry(carrier_server: FakeCarrierServer) -> None:
    clock = Clock()
    carrier_server.reply("POST", TOKEN_PATH, *tokens("t1", "t2", expires_in=600))
    carrier_server.reply("POST", PATH, found())

    async with FedexAdapter(carrier_server.url, DEFAULT, clock=clock) as fedex:
        await fedex.track([TrackingRequest(NUMBER, "fedex")])
        clock.now += 600 - EXPIRY_MARGIN - 1
        await fedex.track([TrackingRequest(NUMBER, "fedex")])
        clock.now += 2
        await fedex.track([TrackingRequest(NUMBER, "fedex")])

    assert bearer_tokens(carrier_server) == ["Bearer t1", "Bearer t1", "Bearer t2"]


async def test_401_fetches_new_token_once(carrier_server: FakeCarrierServer) -> None:
    carrier_server.reply("POST", TOKEN_PATH, *tokens("revoked", "fresh"))
    carrier_server.reply("POST", PATH, Reply(status=401, json={}), found())

    async with FedexAdapter(carrier_server.url, DEFAULT) as fedex:
        [result] = await fedex.track([TrackingRequest(NUMBER, "fedex")])

    assert result.found
    assert bearer_tokens(carrier_server) == ["Bearer revoked", "Bearer fresh"]


async def test_second_401_raises(carrier_server: FakeCarrierServer) -> None:
    carrier_server.reply("POST", TOKEN_PATH, *tokens("t1", "t2", "t3"))
    carrier_server.reply("POST", PATH, Reply(status=401, json={}))

    async with FedexAdapter(carrier_server.url, DEFAULT) as fedex:
        with pytest.raises(CarrierAuthError):
            await fedex.track([TrackingRequest(NUMBER, "fedex")])

    assert len(carrier_server.requests_to("POST", TOKEN_PATH)) == 2
    assert len(carrier_server.requests_to("POST", PATH)) == 2


async def test_403_is_not_retried(carrier_server: FakeCarrierServer) -> None:
    carrier_server.reply("POST", TOKEN_PATH, *tokens("t1"))
    carrier_server.reply("POST", PATH, Reply(status=403, json={}))

    async with FedexAdapter(carrier_server.url, DEFAULT) as fedex:
        with pytest.raises(CarrierAuthError) as caught:
            await fedex.track([TrackingRequest(NUMBER, "fedex")])

    assert caught.value.status == 403
    assert len(carrier_server.requests_to("POST", PATH)) == 1


@pytest.mark.parametrize("status", [400, 401])
async def test_rejected_token_request_raises(
    carrier_server: FakeCarrierServer, status: int
) -> None:
    error = {"error": "invalid_client", "error_description": "bad client"}
    carrier_server.reply("POST", TOKEN_PATH, Reply(status=status, json=error))

    async with FedexAdapter(carrier_server.url, DEFAULT) as fedex:
        with pytest.raises(CarrierAuthError) as caught:
            await fedex.track([TrackingRequest(NUMBER, "fedex")])

    assert caught.value.credential == "default"
    assert "fx-secret" not in str(caught.value)
    assert carrier_server.requests_to("POST", PATH) == []


async def test_token_without_access_token_is_response_error(
    carrier_server: FakeCarrierServer,
) -> None:
    from mailhandler.carriers import CarrierResponseError

    carrier_server.reply("POST", TOKEN_PATH, Reply(json={"token_type": "Bearer"}))

    async with FedexAdapter(carrier_server.url, DEFAULT) as fedex:
        with pytest.raises(CarrierResponseError, match="access_token"):
            await fedex.track([TrackingRequest(NUMBER, "fedex")])


async def test_shop_credentials_get_their_own_token(
    carrier_server: FakeCarrierServer,
) -> None:
    shop = Credentials(label="shop-a", client_id="shop-id", client_secret="shop-secret")
    carrier_server.reply("POST", TOKEN_PATH, *tokens("default-token", "shop-token"))
    carrier_server.reply("POST", PATH, found())

    async with FedexAdapter(carrier_server.url, DEFAULT) as fedex:
        await fedex.track([TrackingRequest(NUMBER, "fedex")])
        await fedex.track([TrackingRequest(NUMBER, "fedex", credentials=shop)])
        await fedex.track([TrackingRequest(NUMBER, "fedex", credentials=shop)])
        with pytest.raises(ValueError, match="mixes credentials"):
            await fedex.track(
                [
                    TrackingRequest(NUMBER, "fedex"),
                    TrackingRequest(NUMBER, "fedex", credentials=shop),
                ]
            )

    token_bodies = [r.body for r in carrier_server.requests_to("POST", TOKEN_PATH)]
    assert b"client_id=fx-id" in token_bodies[0]
    assert b"client_id=shop-id" in token_bodies[1]
    assert bearer_tokens(carrier_server) == [
        "Bearer default-token",
        "Bearer shop-token",
        "Bearer shop-token",
    ]

"""The carrier registry and the carrier settings."""

from __future__ import annotations

import pytest

from mailhandler.carriers import CarrierAdapter, CarrierRegistry, Credentials
from mailhandler.carriers.dhl import DhlAdapter
from mailhandler.carriers.fedex import FedexAdapter
from mailhandler.carriers.seventeentrack import SeventeenTrackAdapter
from mailhandler.carriers.ups import UpsAdapter
from mailhandler.carriers.usps import UspsAdapter
from mailhandler.settings import Settings

pytestmark = pytest.mark.anyio

LOCAL = "http://127.0.0.1:9"
SETTINGS_ENV = (
    "DHL_BASE_URL",
    "DHL_API_KEY",
    "UPS_BASE_URL",
    "UPS_CLIENT_ID",
    "UPS_CLIENT_SECRET",
    "FEDEX_BASE_URL",
    "FEDEX_CLIENT_ID",
    "FEDEX_CLIENT_SECRET",
    "USPS_BASE_URL",
    "USPS_CLIENT_ID",
    "USPS_CLIENT_SECRET",
    "SEVENTEENTRACK_BASE_URL",
    "SEVENTEENTRACK_API_KEY",
    "CARRIER_TIMEOUT",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BCCTRACK_CONFIG", raising=False)
    for name in SETTINGS_ENV:
        monkeypatch.delenv(f"BCCTRACK_{name}", raising=False)


def local_settings(**values: object) -> Settings:
    urls = {
        f"{name}_base_url": LOCAL
        for name in ("dhl", "ups", "fedex", "usps", "seventeentrack")
    }
    return Settings(**{**urls, **values})


def test_settings_default_to_production_without_credentials() -> None:
    settings = Settings()

    assert settings.dhl_base_url == "https://api-eu.dhl.com"
    assert settings.ups_base_url == "https://onlinetools.ups.com"
    assert settings.fedex_base_url == "https://apis.fedex.com"
    assert settings.usps_base_url == "https://apis.usps.com"
    assert settings.seventeentrack_base_url == "https://api.17track.net"
    assert settings.dhl_api_key.get_secret_value() == ""
    assert settings.ups_client_id == ""
    assert settings.carrier_timeout == 20.0


def test_settings_from_environment_hide_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BCCTRACK_DHL_API_KEY", "dhl-secret-key")
    monkeypatch.setenv("BCCTRACK_UPS_CLIENT_ID", "ups-id")
    monkeypatch.setenv("BCCTRACK_UPS_CLIENT_SECRET", "ups-secret")
    monkeypatch.setenv("BCCTRACK_DHL_BASE_URL", LOCAL)

    settings = Settings()

    assert settings.dhl_api_key.get_secret_value() == "dhl-secret-key"
    assert settings.dhl_base_url == LOCAL
    assert settings.ups_client_secret.get_secret_value() == "ups-secret"
    assert "dhl-secret-key" not in repr(settings)
    assert "ups-secret" not in repr(settings)


async def test_registry_from_settings_builds_every_adapter() -> None:
    settings = local_settings(
        dhl_api_key="k", ups_client_id="u", ups_client_secret="s", carrier_timeout=3
    )
    registry = CarrierRegistry.from_settings(settings)
    try:
        kinds = [type(adapter) for adapter in registry.adapters]
        assert all(isinstance(a, CarrierAdapter) for a in registry.adapters)
        assert kinds == [
            DhlAdapter,
            UpsAdapter,
            FedexAdapter,
            UspsAdapter,
            SeventeenTrackAdapter,
        ]
        assert all(a.base_url == LOCAL for a in registry.adapters)  # type: ignore[attr-defined]
        assert registry.adapters[0].has_credentials()
        assert registry.adapters[1].has_credentials()
        assert not registry.adapters[2].has_credentials()
    finally:
        await registry.aclose()


async def test_route_direct_aggregator_or_none() -> None:
    registry = CarrierRegistry.from_settings(
        local_settings(dhl_api_key="k", seventeentrack_api_key="17")
    )
    try:
        dhl = registry.route("dhl_paket")
        fedex = registry.route("fedex")
        gls = registry.route("gls")
        unknown = registry.route(None)
    finally:
        await registry.aclose()

    assert dhl is not None and dhl.adapter.name == "dhl"
    assert dhl.credentials is None
    # FedEx has no credentials, so its shipments go to the aggregator.
    assert fedex is not None and fedex.adapter.name == "seventeentrack"
    assert gls is not None and gls.adapter.name == "seventeentrack"
    assert unknown is not None and unknown.adapter.name == "seventeentrack"


async def test_route_none_without_any_credentials() -> None:
    registry = CarrierRegistry.from_settings(local_settings())
    try:
        assert registry.route("dhl_express") is None
        assert registry.route("gls") is None
    finally:
        await registry.aclose()


async def test_route_prefers_shop_credentials() -> None:
    registry = CarrierRegistry.from_settings(local_settings(ups_client_id="u"))
    shop = Credentials(label="shop-a", client_id="shop-id", client_secret="shop-secret")
    half = Credentials(label="shop-b", client_id="only-id")
    try:
        with_shop = registry.route("ups", {"ups": shop})
        with_half = registry.route("ups", {"ups": half})
    finally:
        await registry.aclose()

    assert with_shop is not None
    assert with_shop.adapter.name == "ups"
    assert with_shop.credentials == shop
    # Incomplete shop credentials and no configured secret: nothing to use.
    assert with_half is None


async def test_registry_rejects_two_adapters_for_one_carrier() -> None:
    first = DhlAdapter(LOCAL)
    second = DhlAdapter(LOCAL)
    try:
        with pytest.raises(ValueError, match="dhl_"):
            CarrierRegistry([first, second])
    finally:
        await first.aclose()
        await second.aclose()

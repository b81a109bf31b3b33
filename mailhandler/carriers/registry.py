"""Which carrier adapter serves which carrier slug.

The poller calls ``route(slug, shop_credentials)`` for every shipment. A
carrier with a direct adapter goes there when the adapter has credentials
(the shop's own or the configured ones). Every other carrier, and a direct
one without credentials, goes to the aggregator when that has credentials.
Otherwise the route is None and the shipment is not polled.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from mailhandler.carriers.base import CarrierAdapter, Credentials
from mailhandler.carriers.dhl import DhlAdapter
from mailhandler.carriers.fedex import FedexAdapter
from mailhandler.carriers.seventeentrack import SeventeenTrackAdapter
from mailhandler.carriers.ups import UpsAdapter
from mailhandler.carriers.usps import UspsAdapter
from mailhandler.settings import Settings

log = logging.getLogger("bcctrack.poller")


@dataclass(frozen=True)
class Route:
    """The adapter for one shipment, and the credentials to send with it.

    ``credentials`` is None when the adapter's configured credentials apply;
    put it on the ``TrackingRequest`` as it is.
    """

    adapter: CarrierAdapter
    credentials: Credentials | None = None


class CarrierRegistry:
    """The adapters of one process, by the carrier slugs they serve."""

    def __init__(
        self,
        adapters: Sequence[CarrierAdapter],
        aggregator: CarrierAdapter | None = None,
    ) -> None:
        self._by_carrier: dict[str, CarrierAdapter] = {}
        for adapter in adapters:
            for carrier in adapter.carriers:
                other = self._by_carrier.get(carrier)
                if other is not None:
                    raise ValueError(
                        f"carrier {carrier!r} is served by both {other.name!r} "
                        f"and {adapter.name!r}; register one of them"
                    )
                self._by_carrier[carrier] = adapter
        self._adapters = tuple(adapters)
        self.aggregator = aggregator

    @classmethod
    def from_settings(
        cls, settings: Settings, *, client: httpx.AsyncClient | None = None
    ) -> CarrierRegistry:
        """Build every adapter from the settings' base URLs and credentials.

        ``client`` is shared by all adapters when given; otherwise each opens
        its own with ``carrier_timeout``.
        """
        timeout = settings.carrier_timeout

        def oauth(client_id: str, secret: SecretStr) -> Credentials:
            return Credentials(
                client_id=client_id, client_secret=secret.get_secret_value()
            )

        adapters: list[CarrierAdapter] = [
            DhlAdapter(
                settings.dhl_base_url,
                Credentials(api_key=settings.dhl_api_key.get_secret_value()),
                client=client,
                timeout=timeout,
            ),
            UpsAdapter(
                settings.ups_base_url,
                oauth(settings.ups_client_id, settings.ups_client_secret),
                client=client,
                timeout=timeout,
            ),
            FedexAdapter(
                settings.fedex_base_url,
                oauth(settings.fedex_client_id, settings.fedex_client_secret),
                client=client,
                timeout=timeout,
            ),
            UspsAdapter(
                settings.usps_base_url,
                oauth(settings.usps_client_id, settings.usps_client_secret),
                client=client,
                timeout=timeout,
            ),
        ]
        aggregator = SeventeenTrackAdapter(
            settings.seventeentrack_base_url,
            Credentials(api_key=settings.seventeentrack_api_key.get_secret_value()),
            client=client,
            timeout=timeout,
        )
        unconfigured = [
            a.name for a in (*adapters, aggregator) if not a.has_credentials()
        ]
        if unconfigured:
            log.info(
                "carrier adapters without credentials: %s", ", ".join(unconfigured)
            )
        return cls(adapters, aggregator)

    def route(
        self,
        carrier: str | None,
        shop_credentials: Mapping[str, Credentials] | None = None,
    ) -> Route | None:
        """Return where to track a shipment of ``carrier``, or None.

        ``shop_credentials`` maps adapter names (``dhl``, ``ups``, ...) to a
        shop's own credentials, which win over the configured ones.
        """
        own = shop_credentials or {}
        direct = self._by_carrier.get(carrier or "")
        for adapter in (direct, self.aggregator):
            if adapter is None:
                continue
            shop = own.get(adapter.name)
            if shop is not None and adapter.has_credentials(shop):
                return Route(adapter, shop)
            if adapter.has_credentials():
                return Route(adapter)
        return None

    @property
    def adapters(self) -> tuple[CarrierAdapter, ...]:
        """Every adapter, the aggregator last."""
        if self.aggregator is None:
            return self._adapters
        return (*self._adapters, self.aggregator)

    async def aclose(self) -> None:
        """Close every adapter's HTTP connections."""
        for adapter in self.adapters:
            await adapter.aclose()

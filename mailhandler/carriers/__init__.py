"""Carrier adapters: the code that requests events from carriers' tracking APIs.

``CarrierRegistry.from_settings`` builds one adapter per carrier API;
``route`` picks the adapter for a shipment's carrier; each adapter's
``track`` returns ``TrackingResult`` objects or raises a ``CarrierError``.
"""

from mailhandler.carriers.base import (
    CarrierAdapter,
    Credentials,
    TrackingEvent,
    TrackingRequest,
    TrackingResult,
)
from mailhandler.carriers.errors import (
    CarrierAuthError,
    CarrierError,
    CarrierRateLimited,
    CarrierResponseError,
    CarrierUnavailable,
    parse_retry_after,
)
from mailhandler.carriers.registry import CarrierRegistry, Route

__all__ = [
    "CarrierAdapter",
    "CarrierAuthError",
    "CarrierError",
    "CarrierRateLimited",
    "CarrierRegistry",
    "CarrierResponseError",
    "CarrierUnavailable",
    "Credentials",
    "Route",
    "TrackingEvent",
    "TrackingRequest",
    "TrackingResult",
    "parse_retry_after",
]

"""DHL Shipment Tracking - Unified: one API for DHL Express, Paket and eCommerce.

``GET {base}/track/shipments?trackingNumber=...&service=...&language=en`` with
the ``DHL-API-Key`` header, one number per request. Without ``service``, a
lookup may return the shipment of another DHL business that uses the same
number, so the adapter always sends the service of the carrier slug. A new
API key's service level allows 1 call per second and 250 calls per day, and
the daily quota resets at 00:00 GMT.

DHL reports five status codes (pre-transit, transit, delivered, failure,
unknown). Out for delivery, ready for pickup, failed attempts and returns
exist only in the event text, so the adapter refines the code with the text
rules below.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import httpx
from pydantic import Field

from mailhandler.carriers.base import (
    CamelModel,
    Credentials,
    HttpAdapter,
    TrackingEvent,
    TrackingRequest,
    TrackingResult,
    join_location,
    match_text,
    number_key,
    parse_date,
    parse_model,
    parse_timestamp,
    sorted_events,
    subject,
)
from mailhandler.carriers.errors import CarrierResponseError
from mailhandler.carriers.transport import decode_json, excerpt, send
from mailhandler.store.models import ShipmentStatus

log = logging.getLogger("bcctrack.poller")

S = ShipmentStatus

PRODUCTION_URL = "https://api-eu.dhl.com"

# The ``service`` query value for each carrier slug that DHL serves.
SERVICE_FOR_CARRIER: dict[str, str] = {
    "dhl_express": "express",
    "dhl_paket": "parcel-de",
    "dhl_ecommerce": "ecommerce",
}

# DHL's statusCode enum.
STATUS_FOR_CODE: dict[str, ShipmentStatus] = {
    "pre-transit": S.PENDING,
    "transit": S.IN_TRANSIT,
    "delivered": S.DELIVERED,
    "failure": S.EXCEPTION,
    "unknown": S.UNKNOWN,
}

_RETURNED = re.compile(
    r"return(ed|ing)? to (the )?(sender|shipper)|zurück an den absender"
    r"|rücksendung an den absender|wird zurückgesendet",
    re.IGNORECASE,
)
_OUT_FOR_DELIVERY = re.compile(
    r"out for delivery|loaded onto the delivery vehicle|in zustellung"
    r"|auf dem zustellfahrzeug|wird heute zugestellt",
    re.IGNORECASE,
)
_AVAILABLE_FOR_PICKUP = re.compile(
    r"ready for (pick ?up|collection)|available for (pick ?up|collection)"
    r"|can be picked up|zur abholung bereit|liegt .* zur abholung",
    re.IGNORECASE,
)
_ATTEMPTED = re.compile(
    r"attempt|not at home|recipient (was )?not (available|found)"
    r"|zustellversuch|nicht angetroffen",
    re.IGNORECASE,
)

# NOTE: DHL documents no list of event texts. These English and German
# phrases are typical DHL wording, not checked against recorded responses.
# An event whose text matches none of them keeps the status of its code.
# TODO(record real DHL event texts per service and extend these rules)
REFINEMENTS: dict[str, tuple[tuple[re.Pattern[str], ShipmentStatus], ...]] = {
    "transit": (
        (_RETURNED, S.RETURNED),
        (_OUT_FOR_DELIVERY, S.OUT_FOR_DELIVERY),
        (_AVAILABLE_FOR_PICKUP, S.AVAILABLE_FOR_PICKUP),
    ),
    "failure": (
        (_RETURNED, S.RETURNED),
        (_ATTEMPTED, S.DELIVERY_FAILED),
    ),
    "delivered": ((_RETURNED, S.RETURNED),),
}


class _Address(CamelModel):
    address_locality: str | None = None
    postal_code: str | None = None
    country_code: str | None = None


class _Location(CamelModel):
    address: _Address | None = None


class _Event(CamelModel):
    timestamp: str | None = None
    location: _Location | None = None
    status_code: str | None = None
    status: str | None = None
    description: str | None = None
    remark: str | None = None


class _TimeFrame(CamelModel):
    estimated_from: str | None = None
    estimated_through: str | None = None


class _Shipment(CamelModel):
    id: str
    service: str | None = None
    status: _Event | None = None
    estimated_time_of_delivery: str | None = None
    estimated_delivery_time_frame: _TimeFrame | None = None
    events: list[_Event] = Field(default_factory=list)


class _Response(CamelModel):
    shipments: list[_Shipment]


class _Problem(CamelModel):
    title: str | None = None
    detail: str | None = None


def map_status(code: str | None, *texts: str | None) -> ShipmentStatus:
    """Return the canonical status of a DHL statusCode and its texts."""
    key = (code or "").strip().lower()
    refined = match_text(REFINEMENTS.get(key, ()), *texts)
    if refined is not None:
        return refined
    return STATUS_FOR_CODE.get(key, S.UNKNOWN)


class DhlAdapter(HttpAdapter):
    """DHL Shipment Tracking - Unified, for dhl_express, dhl_paket, dhl_ecommerce."""

    name = "dhl"
    carriers = frozenset(SERVICE_FOR_CARRIER)
    max_batch = 1
    min_interval = 1.0
    # The poller keeps the daily quota per key (setting dhl_daily_quota).

    def has_credentials(self, credentials: Credentials | None = None) -> bool:
        return bool((credentials or self.credentials).api_key)

    async def _track_batch(
        self, batch: list[TrackingRequest], credentials: Credentials
    ) -> Mapping[str, TrackingResult]:
        request = batch[0]
        response = await send(
            self._client,
            self.name,
            self._build(request, credentials),
            credential=credentials.label,
        )
        return {number_key(request.number): self._parse(request, response)}

    def _build(
        self, request: TrackingRequest, credentials: Credentials
    ) -> httpx.Request:
        params = {"trackingNumber": request.number, "language": "en"}
        service = SERVICE_FOR_CARRIER.get(request.carrier)
        if service is not None:
            params["service"] = service
        return self._client.build_request(
            "GET",
            f"{self.base_url}/track/shipments",
            params=params,
            headers={"DHL-API-Key": credentials.api_key, "Accept": "application/json"},
        )

    def _parse(
        self, request: TrackingRequest, response: httpx.Response
    ) -> TrackingResult:
        if response.status_code in (400, 404):
            detail = self._problem_detail(response)
            if response.status_code == 404:
                return TrackingResult.not_found(request.number, detail)
            return TrackingResult.not_found(request.number, error=detail)
        if response.status_code != 200:
            raise CarrierResponseError(
                self.name,
                f"unexpected status {response.status_code}: {excerpt(response)}",
            )
        data = parse_model(_Response, decode_json(response, self.name), self.name)
        shipment = _pick_shipment(data.shipments, request.number)
        if shipment is None:
            return TrackingResult.not_found(request.number, "no shipments in response")
        return self._result(request, shipment)

    def _problem_detail(self, response: httpx.Response) -> str:
        try:
            problem = _Problem.model_validate(response.json())
        except ValueError:
            return excerpt(response)
        return problem.detail or problem.title or excerpt(response)

    def _result(self, request: TrackingRequest, shipment: _Shipment) -> TrackingResult:
        events = []
        for raw in shipment.events:
            event = self._event(request, raw)
            if event is not None:
                events.append(event)
        ordered = sorted_events(events)
        current = shipment.status
        if current is not None and current.status_code:
            status = map_status(
                current.status_code, current.description, current.status
            )
        elif ordered:
            status = ordered[-1].status
        else:
            status = S.PENDING
        frame = shipment.estimated_delivery_time_frame
        estimate = parse_date(shipment.estimated_time_of_delivery) or parse_date(
            frame.estimated_through if frame else None
        )
        return TrackingResult(
            number=request.number,
            found=True,
            status=status,
            events=ordered,
            estimated_delivery=estimate,
            raw_code=current.status_code if current else None,
            raw_text=(current.description or current.status) if current else None,
        )

    def _event(self, request: TrackingRequest, raw: _Event) -> TrackingEvent | None:
        # NOTE: DHL Paket sends local times without an offset
        # ("2023-03-13T09:50:00"); those are taken as UTC and may be off by
        # one or two hours. TODO(confirm DHL's time zone for offset-free times)
        occurred_at = parse_timestamp(raw.timestamp)
        if occurred_at is None:
            log.warning(
                "%s: dhl event without a valid timestamp %r skipped",
                subject(request),
                raw.timestamp,
            )
            return None
        status = map_status(raw.status_code, raw.description, raw.status)
        if status == S.UNKNOWN and raw.status_code not in STATUS_FOR_CODE:
            log.warning(
                "%s: dhl statusCode %r is not in the mapping; stored as unknown",
                subject(request),
                raw.status_code,
            )
        address = raw.location.address if raw.location else None
        return TrackingEvent(
            occurred_at=occurred_at,
            status=status,
            raw_code=raw.status_code,
            raw_text=raw.description or raw.status,
            location=join_location(
                address.address_locality if address else None,
                address.country_code if address else None,
            ),
        )


def _pick_shipment(shipments: list[_Shipment], number: str) -> _Shipment | None:
    target = number_key(number)
    for shipment in shipments:
        if number_key(shipment.id) == target:
            return shipment
    return shipments[0] if shipments else None

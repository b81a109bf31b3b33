"""UPS Track API.

``GET {base}/api/track/v1/details/{inquiryNumber}``, one number per request,
with a client-credentials bearer token from ``{base}/security/v1/oauth/token``
(HTTP Basic with the client id and secret) and the required headers
``transId`` (unique per request) and ``transactionSrc``. The specification
is UPS's ``Tracking.yaml`` in github.com/UPS-API/api-documentation. Tracking
data rolls off after 120 days.

A package's activities carry a status ``type`` (D delivered, I in transit,
X exception, P pickup, M manifest, and more), a ``code`` and an English
``description`` (the adapter requests ``locale=en_US``). The type gives the
status; the description refines it where the type is too coarse.
"""

from __future__ import annotations

import base64
import logging
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime

import httpx
from pydantic import Field

from mailhandler.carriers.base import (
    CamelModel,
    Credentials,
    TrackingEvent,
    TrackingRequest,
    TrackingResult,
    join_location,
    match_text,
    number_key,
    parse_date,
    parse_model,
    parse_utc_offset,
    sorted_events,
    subject,
)
from mailhandler.carriers.errors import CarrierResponseError
from mailhandler.carriers.oauth import OAuthAdapter
from mailhandler.carriers.transport import decode_json, excerpt
from mailhandler.store.models import ShipmentStatus

log = logging.getLogger("bcctrack.poller")

S = ShipmentStatus

PRODUCTION_URL = "https://onlinetools.ups.com"
TRANSACTION_SOURCE = "bcctrack"

# NOTE: D, I, X, P and M are the status types of UPS's Tracking developer
# guide; O, RS, MV, NA and W come from public integrations, because the
# REST API's appendix of codes was not available to check.
# TODO(check the status types against developer.ups.com's tracking appendix)
STATUS_FOR_TYPE: dict[str, ShipmentStatus] = {
    "M": S.PENDING,  # manifest (billing information) received
    "MV": S.UNKNOWN,  # manifest voided
    "P": S.IN_TRANSIT,  # picked up
    "I": S.IN_TRANSIT,
    "W": S.IN_TRANSIT,  # in a warehouse
    "O": S.OUT_FOR_DELIVERY,
    "D": S.DELIVERED,
    "X": S.EXCEPTION,
    "RS": S.RETURNED,  # returned to shipper
    "NA": S.UNKNOWN,  # not available
}

_RETURNED = re.compile(
    r"return(ed|ing)? to (the )?(sender|shipper)|being returned", re.IGNORECASE
)
_OUT_FOR_DELIVERY = re.compile(r"out for delivery", re.IGNORECASE)
_AVAILABLE_FOR_PICKUP = re.compile(
    r"(ready|available) for (customer )?pick ?up|access point.*(pick ?up|collect)",
    re.IGNORECASE,
)
_ATTEMPTED = re.compile(
    r"attempt|receiver was not available|not (at )?home|business was closed",
    re.IGNORECASE,
)

# Text rules per status type, tried in order; the first match wins.
REFINEMENTS: dict[str, tuple[tuple[re.Pattern[str], ShipmentStatus], ...]] = {
    "I": (
        (_RETURNED, S.RETURNED),
        (_OUT_FOR_DELIVERY, S.OUT_FOR_DELIVERY),
        (_AVAILABLE_FOR_PICKUP, S.AVAILABLE_FOR_PICKUP),
    ),
    "X": (
        (_RETURNED, S.RETURNED),
        (_ATTEMPTED, S.DELIVERY_FAILED),
    ),
    "D": ((_AVAILABLE_FOR_PICKUP, S.AVAILABLE_FOR_PICKUP),),
}


class _Status(CamelModel):
    type: str | None = None
    code: str | None = None
    description: str | None = None
    simplified_text_description: str | None = None
    status_code: str | None = None


class _Address(CamelModel):
    city: str | None = None
    state_province: str | None = None
    country: str | None = None
    country_code: str | None = None


class _Location(CamelModel):
    address: _Address | None = None


class _Activity(CamelModel):
    date: str | None = None
    time: str | None = None
    gmt_date: str | None = None
    gmt_time: str | None = None
    gmt_offset: str | None = None
    location: _Location | None = None
    status: _Status | None = None


class _DeliveryDate(CamelModel):
    type: str | None = None
    date: str | None = None


class _Package(CamelModel):
    tracking_number: str | None = None
    current_status: _Status | None = None
    activity: list[_Activity] = Field(default_factory=list)
    delivery_date: list[_DeliveryDate] = Field(default_factory=list)


class _Message(CamelModel):
    code: str | None = None
    message: str | None = None


class _Shipment(CamelModel):
    inquiry_number: str | None = None
    package: list[_Package] = Field(default_factory=list)
    warnings: list[_Message] = Field(default_factory=list)


class _TrackResponse(CamelModel):
    shipment: list[_Shipment]


class _Response(CamelModel):
    track_response: _TrackResponse


class _Errors(CamelModel):
    errors: list[_Message] = Field(default_factory=list)


class _ErrorResponse(CamelModel):
    response: _Errors


def map_status(status_type: str | None, *texts: str | None) -> ShipmentStatus:
    """Return the canonical status of a UPS status type and its texts."""
    key = (status_type or "").strip().upper()
    refined = match_text(REFINEMENTS.get(key, ()), *texts)
    if refined is not None:
        return refined
    return STATUS_FOR_TYPE.get(key, S.UNKNOWN)


class UpsAdapter(OAuthAdapter):
    """UPS Track API, for the ``ups`` carrier slug."""

    name = "ups"
    carriers = frozenset({"ups"})
    max_batch = 1
    # NOTE: UPS does not publish a rate limit for the Track API; one request
    # a second is a conservative guess. TODO(ask UPS for the Track API limit)
    min_interval = 1.0
    token_path = "/security/v1/oauth/token"

    def _token_request(self, credentials: Credentials) -> httpx.Request:
        return self._client.build_request(
            "POST",
            f"{self.base_url}{self.token_path}",
            data={"grant_type": "client_credentials"},
            headers={
                "Authorization": basic_auth(
                    credentials.client_id, credentials.client_secret
                ),
                "Accept": "application/json",
            },
        )

    async def _track_batch(
        self, batch: list[TrackingRequest], credentials: Credentials
    ) -> Mapping[str, TrackingResult]:
        request = batch[0]

        def build(token: str) -> httpx.Request:
            return self._client.build_request(
                "GET",
                f"{self.base_url}/api/track/v1/details/{request.number}",
                params={
                    "locale": "en_US",
                    "returnSignature": "false",
                    "returnMilestones": "false",
                    "returnPOD": "false",
                },
                headers={
                    "Authorization": f"Bearer {token}",
                    "transId": uuid.uuid4().hex,
                    "transactionSrc": TRANSACTION_SOURCE,
                    "Accept": "application/json",
                },
            )

        response = await self._send_authorized(build, credentials)
        return {number_key(request.number): self._parse(request, response)}

    def _parse(
        self, request: TrackingRequest, response: httpx.Response
    ) -> TrackingResult:
        if response.status_code in (400, 404):
            detail = self._error_detail(response)
            if response.status_code == 404:
                return TrackingResult.not_found(request.number, detail)
            return TrackingResult.not_found(request.number, error=detail)
        if response.status_code != 200:
            raise CarrierResponseError(
                self.name,
                f"unexpected status {response.status_code}: {excerpt(response)}",
            )
        data = parse_model(_Response, decode_json(response, self.name), self.name)
        shipments = data.track_response.shipment
        package = _pick_package(shipments, request.number)
        if package is None:
            warnings = [w.message for s in shipments for w in s.warnings if w.message]
            return TrackingResult.not_found(
                request.number, "; ".join(warnings) or "no package in response"
            )
        return self._result(request, package)

    def _error_detail(self, response: httpx.Response) -> str:
        try:
            errors = _ErrorResponse.model_validate(response.json()).response.errors
        except ValueError:
            return excerpt(response)
        messages = [f"{e.code}: {e.message}" for e in errors if e.message]
        return "; ".join(messages) or excerpt(response)

    def _result(self, request: TrackingRequest, package: _Package) -> TrackingResult:
        events = [
            event
            for activity in package.activity
            if (event := self._event(request, activity)) is not None
        ]
        ordered = sorted_events(events)
        current = package.current_status
        if current is not None and current.type:
            status = map_status(current.type, current.description)
        elif ordered:
            status = ordered[-1].status
        else:
            status = S.PENDING
        return TrackingResult(
            number=request.number,
            found=True,
            status=status,
            events=ordered,
            estimated_delivery=_estimated_delivery(package.delivery_date),
            raw_code=_raw_code(current),
            raw_text=current.description if current else None,
        )

    def _event(
        self, request: TrackingRequest, activity: _Activity
    ) -> TrackingEvent | None:
        occurred_at = activity_time(activity)
        if occurred_at is None:
            log.warning(
                "%s: ups activity without a valid date %r %r skipped",
                subject(request),
                activity.date,
                activity.time,
            )
            return None
        status_info = activity.status or _Status()
        status = map_status(status_info.type, status_info.description)
        if (status_info.type or "").upper() not in STATUS_FOR_TYPE:
            log.warning(
                "%s: ups status type %r is not in the mapping; stored as %s",
                subject(request),
                status_info.type,
                status,
            )
        address = activity.location.address if activity.location else None
        return TrackingEvent(
            occurred_at=occurred_at,
            status=status,
            raw_code=_raw_code(status_info),
            raw_text=status_info.description,
            location=join_location(
                address.city if address else None,
                address.state_province if address else None,
                (address.country_code or address.country) if address else None,
            ),
        )


def basic_auth(user: str, password: str) -> str:
    """Return the HTTP Basic ``Authorization`` value (RFC 7617)."""
    pair = f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def activity_time(activity: _Activity) -> datetime | None:
    """Return an activity's time in UTC.

    ``gmtDate`` and ``gmtTime`` are UTC; UPS drops the leading zero of the
    hour there ("74700"). Without them the local ``date`` and ``time`` are
    used with ``gmtOffset``, or as UTC when that is missing too.
    """
    utc = _parse_compact(activity.gmt_date, activity.gmt_time)
    if utc is not None:
        return utc.replace(tzinfo=UTC)
    local = _parse_compact(activity.date, activity.time)
    if local is None:
        return None
    offset = parse_utc_offset(activity.gmt_offset)
    return local.replace(tzinfo=offset or UTC).astimezone(UTC)


def _parse_compact(day: str | None, time: str | None) -> datetime | None:
    if not day:
        return None
    clock = (time or "000000").strip().zfill(6)
    try:
        return datetime.strptime(f"{day.strip()}{clock}", "%Y%m%d%H%M%S")
    except ValueError:
        return None


def _raw_code(status: _Status | None) -> str | None:
    """Return ``type/code`` so that both UPS codes stay with the event."""
    if status is None:
        return None
    parts = [part for part in (status.type, status.code) if part]
    return "/".join(parts) or None


def _estimated_delivery(dates: list[_DeliveryDate]) -> date | None:
    # A rescheduled date (RDD) replaces the scheduled one (SDD); DEL is the
    # day of delivery, not an estimate.
    by_type = {d.type: d.date for d in dates if d.type}
    return parse_date(by_type.get("RDD") or by_type.get("SDD"))


def _pick_package(shipments: list[_Shipment], number: str) -> _Package | None:
    # A multi-piece shipment lists several packages; the one whose number was
    # asked for is the one the customer has.
    target = number_key(number)
    packages = [package for shipment in shipments for package in shipment.package]
    for package in packages:
        if package.tracking_number and number_key(package.tracking_number) == target:
            return package
    return packages[0] if packages else None

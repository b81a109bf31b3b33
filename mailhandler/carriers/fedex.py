"""FedEx Track API (Basic Integrated Visibility).

``POST {base}/track/v1/trackingnumbers`` with up to 30 numbers per request
and a bearer token from ``POST {base}/oauth/token`` (form-encoded
``grant_type=client_credentials``, ``client_id``, ``client_secret``; the token
lasts 60 minutes). FedEx allows 100,000 calls a day. A number FedEx does not
know comes back inside a 200 as a per-number error
``TRACKING.TRACKINGNUMBER.NOTFOUND``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date

import httpx
from pydantic import Field

from mailhandler.carriers.base import (
    CamelModel,
    Credentials,
    TrackingEvent,
    TrackingRequest,
    TrackingResult,
    join_location,
    number_key,
    parse_date,
    parse_model,
    parse_timestamp,
    sorted_events,
)
from mailhandler.carriers.errors import CarrierResponseError
from mailhandler.carriers.oauth import OAuthAdapter
from mailhandler.carriers.transport import decode_json, excerpt
from mailhandler.store.models import ShipmentStatus

log = logging.getLogger("bcctrack.poller")

S = ShipmentStatus

PRODUCTION_URL = "https://apis.fedex.com"
NOT_FOUND_SUFFIX = ".NOTFOUND"

# NOTE: FedEx's status and scan event codes as karrio's FedEx connector
# lists them from developer.fedex.com; FedEx's own code list was not
# available to check. TODO(check the codes against FedEx's Track API docs)
STATUS_FOR_CODE: dict[str, ShipmentStatus] = {
    "OC": S.PENDING,  # shipment information sent to FedEx
    "PU": S.IN_TRANSIT,  # picked up
    "PX": S.IN_TRANSIT,  # picked up
    "IT": S.IN_TRANSIT,
    "AR": S.IN_TRANSIT,  # arrived at a FedEx location
    "DP": S.IN_TRANSIT,  # departed a FedEx location
    "AF": S.IN_TRANSIT,  # at a local FedEx facility
    "AA": S.IN_TRANSIT,  # at airport
    "AC": S.IN_TRANSIT,  # at Canada Post facility
    "CC": S.IN_TRANSIT,  # cleared customs
    "CP": S.IN_TRANSIT,  # clearance in progress
    "EA": S.IN_TRANSIT,  # en route to origin airport
    "EO": S.IN_TRANSIT,  # en route to origin airport
    "FD": S.IN_TRANSIT,  # at FedEx destination
    "LO": S.IN_TRANSIT,  # left origin
    "OD": S.OUT_FOR_DELIVERY,
    "ED": S.OUT_FOR_DELIVERY,  # en route to delivery
    "AD": S.OUT_FOR_DELIVERY,  # at delivery
    "HL": S.AVAILABLE_FOR_PICKUP,  # hold at location
    "HP": S.AVAILABLE_FOR_PICKUP,  # ready for recipient pickup
    "DL": S.DELIVERED,
    "DE": S.DELIVERY_FAILED,  # delivery exception
    "SE": S.EXCEPTION,  # shipment exception
    "CD": S.EXCEPTION,  # clearance delay
    "DY": S.EXCEPTION,  # delay
    "DD": S.EXCEPTION,  # delivery delay
    "RS": S.RETURNED,  # return to shipper
    "CA": S.UNKNOWN,  # shipment cancelled
}


class _Message(CamelModel):
    code: str | None = None
    message: str | None = None


class _TrackingNumberInfo(CamelModel):
    tracking_number: str | None = None


class _StatusDetail(CamelModel):
    code: str | None = None
    derived_code: str | None = None
    status_by_locale: str | None = None
    description: str | None = None


class _ScanLocation(CamelModel):
    city: str | None = None
    state_or_province_code: str | None = None
    country_code: str | None = None


class _ScanEvent(CamelModel):
    date: str | None = None
    event_type: str | None = None
    event_description: str | None = None
    exception_code: str | None = None
    exception_description: str | None = None
    derived_status_code: str | None = None
    scan_location: _ScanLocation | None = None


class _DateAndTime(CamelModel):
    type: str | None = None
    date_time: str | None = None


class _Window(CamelModel):
    begins: str | None = None
    ends: str | None = None


class _TimeWindow(CamelModel):
    window: _Window | None = None


class _TrackResult(CamelModel):
    tracking_number_info: _TrackingNumberInfo | None = None
    latest_status_detail: _StatusDetail | None = None
    scan_events: list[_ScanEvent] = Field(default_factory=list)
    date_and_times: list[_DateAndTime] = Field(default_factory=list)
    estimated_delivery_time_window: _TimeWindow | None = None
    error: _Message | None = None


class _CompleteTrackResult(CamelModel):
    tracking_number: str
    track_results: list[_TrackResult] = Field(default_factory=list)


class _Output(CamelModel):
    complete_track_results: list[_CompleteTrackResult] = Field(default_factory=list)


class _Response(CamelModel):
    output: _Output | None = None
    errors: list[_Message] = Field(default_factory=list)


def map_status(code: str | None, derived_code: str | None = None) -> ShipmentStatus:
    """Return the canonical status of a FedEx code, or of its derived code."""
    for candidate in (code, derived_code):
        status = STATUS_FOR_CODE.get((candidate or "").strip().upper())
        if status is not None:
            return status
    return S.UNKNOWN


class FedexAdapter(OAuthAdapter):
    """FedEx Track API, for the ``fedex`` carrier slug."""

    name = "fedex"
    carriers = frozenset({"fedex"})
    max_batch = 30
    # 100,000 calls a day is 1.16 a second; one a second stays below it.
    min_interval = 1.0
    token_path = "/oauth/token"

    def _token_request(self, credentials: Credentials) -> httpx.Request:
        return self._client.build_request(
            "POST",
            f"{self.base_url}{self.token_path}",
            data={
                "grant_type": "client_credentials",
                "client_id": credentials.client_id,
                "client_secret": credentials.client_secret,
            },
            headers={"Accept": "application/json"},
        )

    async def _track_batch(
        self, batch: list[TrackingRequest], credentials: Credentials
    ) -> Mapping[str, TrackingResult]:
        numbers = list(dict.fromkeys(request.number for request in batch))
        body = {
            "includeDetailedScans": True,
            "trackingInfo": [
                {"trackingNumberInfo": {"trackingNumber": number}} for number in numbers
            ],
        }

        def build(token: str) -> httpx.Request:
            return self._client.build_request(
                "POST",
                f"{self.base_url}/track/v1/trackingnumbers",
                json=body,
                headers={
                    "Authorization": f"Bearer {token}",
                    "X-locale": "en_US",
                    "Accept": "application/json",
                },
            )

        response = await self._send_authorized(build, credentials)
        if response.status_code == 400 and len(numbers) == 1:
            # One number alone cannot poison later batches: report it.
            detail = _errors_text(response) or excerpt(response)
            return {
                number_key(numbers[0]): TrackingResult.not_found(
                    numbers[0], error=detail
                )
            }
        if response.status_code != 200:
            raise CarrierResponseError(
                self.name,
                f"unexpected status {response.status_code} for {len(numbers)} "
                f"numbers: {_errors_text(response) or excerpt(response)}",
            )
        data = parse_model(_Response, decode_json(response, self.name), self.name)
        if data.output is None:
            raise CarrierResponseError(
                self.name, f"200 response without output: {_messages(data.errors)}"
            )
        complete = data.output.complete_track_results
        return {
            number_key(entry.tracking_number): self._result(entry) for entry in complete
        }

    def _result(self, entry: _CompleteTrackResult) -> TrackingResult:
        number = entry.tracking_number
        track = _pick_track_result(entry.track_results)
        if track is None:
            return TrackingResult.not_found(number, "no trackResults in response")
        if track.error is not None and track.error.code:
            detail = f"{track.error.code}: {track.error.message or ''}".strip()
            if track.error.code.upper().endswith(NOT_FOUND_SUFFIX):
                return TrackingResult.not_found(number, detail)
            return TrackingResult.not_found(number, error=detail)
        events = [
            event for scan in track.scan_events if (event := self._event(number, scan))
        ]
        ordered = sorted_events(events)
        latest = track.latest_status_detail
        if latest is not None and (latest.code or latest.derived_code):
            status = map_status(latest.code, latest.derived_code)
        elif ordered:
            status = ordered[-1].status
        else:
            status = S.PENDING
        return TrackingResult(
            number=number,
            found=True,
            status=status,
            events=ordered,
            estimated_delivery=_estimated_delivery(track),
            raw_code=latest.code if latest else None,
            raw_text=(latest.description or latest.status_by_locale)
            if latest
            else None,
        )

    def _event(self, number: str, scan: _ScanEvent) -> TrackingEvent | None:
        occurred_at = parse_timestamp(scan.date)
        if occurred_at is None:
            log.warning(
                "tracking number %s: fedex scan without a valid date %r skipped",
                number,
                scan.date,
            )
            return None
        status = map_status(scan.event_type, scan.derived_status_code)
        if status == S.UNKNOWN and scan.event_type not in STATUS_FOR_CODE:
            log.warning(
                "tracking number %s: fedex event type %r is not in the mapping; "
                "stored as unknown",
                number,
                scan.event_type,
            )
        code = "/".join(c for c in (scan.event_type, scan.exception_code) if c)
        text = " - ".join(
            t for t in (scan.event_description, scan.exception_description) if t
        )
        where = scan.scan_location
        return TrackingEvent(
            occurred_at=occurred_at,
            status=status,
            raw_code=code or None,
            raw_text=text or None,
            location=join_location(
                where.city if where else None,
                where.state_or_province_code if where else None,
                where.country_code if where else None,
            ),
        )


def _pick_track_result(results: list[_TrackResult]) -> _TrackResult | None:
    # FedEx can return several results for one number when services reuse
    # it; the one with the latest scan is the current parcel.
    usable = [result for result in results if result.error is None]
    if not usable:
        return results[0] if results else None
    return max(usable, key=_latest_scan)


def _latest_scan(result: _TrackResult) -> str:
    times = [parse_timestamp(scan.date) for scan in result.scan_events]
    known = [time.isoformat() for time in times if time is not None]
    return max(known, default="")


def _estimated_delivery(track: _TrackResult) -> date | None:
    for entry in track.date_and_times:
        if entry.type == "ESTIMATED_DELIVERY":
            return parse_date(entry.date_time)
    window = track.estimated_delivery_time_window
    if window is not None and window.window is not None:
        return parse_date(window.window.ends or window.window.begins)
    return None


def _errors_text(response: httpx.Response) -> str:
    try:
        errors = _Response.model_validate(response.json()).errors
    except ValueError:
        return ""
    return _messages(errors)


def _messages(errors: list[_Message]) -> str:
    return "; ".join(f"{e.code}: {e.message}" for e in errors if e.code)

"""USPS Tracking API v3.

``GET {base}/tracking/v3/tracking/{trackingNumber}?expand=DETAIL``, one number
per request, with a bearer token from ``POST {base}/oauth2/v3/token`` (a JSON
body with ``client_id``, ``client_secret`` and
``grant_type=client_credentials``), as USPS's github.com/USPS/api-examples
shows. USPS names two production hosts, ``apis.usps.com`` and
``api.usps.com``; the base URL is a setting.

A response carries ``statusCategory`` for the whole item and, per event, an
``eventCode`` and an English ``eventType``. The adapter maps the category
for the current status and each event by its code, then by its text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime

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
    parse_timestamp,
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

PRODUCTION_URL = "https://apis.usps.com"

# NOTE: Only "Delivered" is a category seen in a real response; the other
# names follow the categories of usps.com. An unknown category falls back
# to the text rules. TODO(check the statusCategory values with USPS)
STATUS_FOR_CATEGORY: dict[str, ShipmentStatus] = {
    "pre-shipment": S.PENDING,
    "accepted": S.IN_TRANSIT,
    "in transit": S.IN_TRANSIT,
    "out for delivery": S.OUT_FOR_DELIVERY,
    "available for pickup": S.AVAILABLE_FOR_PICKUP,
    "delivery attempt": S.DELIVERY_FAILED,
    "alert": S.EXCEPTION,
    "return to sender": S.RETURNED,
    "delivered": S.DELIVERED,
}

# Event codes seen in USPS responses; the text rules cover the rest.
STATUS_FOR_EVENT_CODE: dict[str, ShipmentStatus] = {
    "01": S.DELIVERED,
    "07": S.IN_TRANSIT,  # arrived at the post office
    "OF": S.OUT_FOR_DELIVERY,
}


def _rule(
    pattern: str, status: ShipmentStatus
) -> tuple[re.Pattern[str], ShipmentStatus]:
    return re.compile(pattern, re.IGNORECASE), status


# Tried in order on the English event text; the first match wins.
TEXT_RULES: tuple[tuple[re.Pattern[str], ShipmentStatus], ...] = (
    _rule(r"return(ed)? to sender", S.RETURNED),
    _rule(r"out for delivery", S.OUT_FOR_DELIVERY),
    _rule(
        r"available for pick ?up|ready for pick ?up|held at post office",
        S.AVAILABLE_FOR_PICKUP,
    ),
    _rule(
        r"notice left|delivery attempt|no access to delivery|receptacle full"
        r"|addressee not available",
        S.DELIVERY_FAILED,
    ),
    _rule(r"\bdelivered\b", S.DELIVERED),
    _rule(r"pre-shipment|label created|awaiting item", S.PENDING),
    _rule(r"alert|delay|missent|damaged|exception", S.EXCEPTION),
    _rule(
        r"accepted|in possession|arrived|departed|in transit|processed|picked up|origin"
        r"|facility|moving through",
        S.IN_TRANSIT,
    ),
)


class _Event(CamelModel):
    event_type: str | None = None
    event_timestamp: str | None = None
    gmt_timestamp: str | None = Field(default=None, alias="GMTTimestamp")
    gmt_offset: str | None = Field(default=None, alias="GMTOffset")
    event_code: str | None = None
    event_city: str | None = None
    event_state: str | None = None
    event_country: str | None = None


class _Tracking(CamelModel):
    tracking_number: str
    status: str | None = None
    status_category: str | None = None
    status_summary: str | None = None
    expected_delivery_time_stamp: str | None = None
    predicted_delivery_time_stamp: str | None = None
    predicted_delivery_date: str | None = None
    tracking_events: list[_Event] = Field(default_factory=list)


class _ErrorItem(CamelModel):
    code: str | None = None
    title: str | None = None
    detail: str | None = None


class _Error(CamelModel):
    code: str | None = None
    message: str | None = None
    errors: list[_ErrorItem] = Field(default_factory=list)


class _ErrorResponse(CamelModel):
    error: _Error


def map_category(category: str | None, *texts: str | None) -> ShipmentStatus:
    """Return the canonical status of a statusCategory, or of its texts."""
    from_text = match_text(TEXT_RULES[:1], *texts)  # a return beats the category
    if from_text is not None:
        return from_text
    status = STATUS_FOR_CATEGORY.get((category or "").strip().lower())
    if status is not None:
        return status
    return match_text(TEXT_RULES, category, *texts) or S.UNKNOWN


def map_event(code: str | None, text: str | None) -> ShipmentStatus:
    """Return the canonical status of a USPS event code and text."""
    status = STATUS_FOR_EVENT_CODE.get((code or "").strip().upper())
    if status is not None:
        return status
    return match_text(TEXT_RULES, text) or S.UNKNOWN


class UspsAdapter(OAuthAdapter):
    """USPS Tracking API v3, for the ``usps`` carrier slug."""

    name = "usps"
    carriers = frozenset({"usps"})
    max_batch = 1
    # NOTE: new USPS apps reportedly get 60 requests an hour; one a minute
    # stays inside that. TODO(check the quota in the USPS developer portal)
    min_interval = 60.0
    token_path = "/oauth2/v3/token"

    def _token_request(self, credentials: Credentials) -> httpx.Request:
        return self._client.build_request(
            "POST",
            f"{self.base_url}{self.token_path}",
            json={
                "client_id": credentials.client_id,
                "client_secret": credentials.client_secret,
                "grant_type": "client_credentials",
            },
            headers={"Accept": "application/json"},
        )

    async def _track_batch(
        self, batch: list[TrackingRequest], credentials: Credentials
    ) -> Mapping[str, TrackingResult]:
        request = batch[0]

        def build(token: str) -> httpx.Request:
            return self._client.build_request(
                "GET",
                f"{self.base_url}/tracking/v3/tracking/{request.number}",
                params={"expand": "DETAIL"},
                headers={
                    "Authorization": f"Bearer {token}",
                    "Accept": "application/json",
                },
            )

        response = await self._send_authorized(build, credentials)
        return {number_key(request.number): self._parse(request, response)}

    def _parse(
        self, request: TrackingRequest, response: httpx.Response
    ) -> TrackingResult:
        if response.status_code in (400, 404):
            detail = _error_detail(response)
            if response.status_code == 404:
                return TrackingResult.not_found(request.number, detail)
            return TrackingResult.not_found(request.number, error=detail)
        if response.status_code != 200:
            raise CarrierResponseError(
                self.name,
                f"unexpected status {response.status_code}: {excerpt(response)}",
            )
        data = parse_model(_Tracking, decode_json(response, self.name), self.name)
        events = [
            event
            for raw in data.tracking_events
            if (event := self._event(request, raw)) is not None
        ]
        ordered = sorted_events(events)
        if data.status_category or data.status:
            status = map_category(data.status_category, data.status)
        elif ordered:
            status = ordered[-1].status
        else:
            status = S.PENDING
        estimate = (
            parse_date(data.expected_delivery_time_stamp)
            or parse_date(data.predicted_delivery_time_stamp)
            or parse_date(data.predicted_delivery_date)
        )
        return TrackingResult(
            number=request.number,
            found=True,
            status=status,
            events=ordered,
            estimated_delivery=estimate,
            raw_code=data.status_category,
            raw_text=data.status_summary or data.status,
        )

    def _event(self, request: TrackingRequest, raw: _Event) -> TrackingEvent | None:
        occurred_at = event_time(raw)
        if occurred_at is None:
            log.warning(
                "%s: usps event without a valid timestamp %r skipped",
                subject(request),
                raw.event_timestamp,
            )
            return None
        status = map_event(raw.event_code, raw.event_type)
        if status == S.UNKNOWN:
            log.warning(
                "%s: usps event %r (%r) matches no rule; stored as unknown",
                subject(request),
                raw.event_code,
                raw.event_type,
            )
        return TrackingEvent(
            occurred_at=occurred_at,
            status=status,
            raw_code=raw.event_code,
            raw_text=raw.event_type,
            location=join_location(raw.event_city, raw.event_state, raw.event_country),
        )


def event_time(raw: _Event) -> datetime | None:
    """Return an event's time in UTC, from GMTTimestamp or the local time.

    ``eventTimestamp`` is local time; without an offset of its own it takes
    ``GMTOffset`` ("-7:00"), or is taken as UTC when that is missing too.
    """
    utc = parse_timestamp(raw.gmt_timestamp)
    if utc is not None:
        return utc
    if not raw.event_timestamp:
        return None
    try:
        local = datetime.fromisoformat(raw.event_timestamp.strip())
    except ValueError:
        return None
    if local.tzinfo is None:
        local = local.replace(tzinfo=parse_utc_offset(raw.gmt_offset) or UTC)
    return local.astimezone(UTC)


def _error_detail(response: httpx.Response) -> str:
    try:
        error = _ErrorResponse.model_validate(response.json()).error
    except ValueError:
        return excerpt(response)
    details = [item.detail or item.title for item in error.errors]
    parts = [error.message, *details]
    return "; ".join(part for part in parts if part) or excerpt(response)

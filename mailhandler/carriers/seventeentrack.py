"""17TRACK Tracking API v2.2, the aggregator for carriers without an adapter.

Every call is a JSON ``POST {base}/track/v2.2/<action>`` with the ``17token``
header and up to 40 numbers. 17TRACK follows a number only after
``register``, which spends one unit of the account's quota and detects the
carrier when none is given. After that, ``gettrackinfo`` returns what
17TRACK has fetched so far. The adapter asks ``gettrackinfo`` first and registers the
numbers that 17TRACK rejects as not registered, so each number costs quota
once.

Each answer sorts numbers into ``accepted`` and ``rejected`` (with an error
code); the top-level ``code`` is 0 unless the whole request failed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date

from pydantic import Field

from mailhandler.carriers.base import (
    Credentials,
    HttpAdapter,
    SnakeModel,
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
from mailhandler.carriers.errors import (
    CarrierAuthError,
    CarrierError,
    CarrierRateLimited,
    CarrierResponseError,
    CarrierUnavailable,
)
from mailhandler.carriers.transport import decode_json, excerpt, send
from mailhandler.store.models import ShipmentStatus

log = logging.getLogger("bcctrack.poller")

S = ShipmentStatus

PRODUCTION_URL = "https://api.17track.net"
API_PATH = "/track/v2.2"

# 17TRACK's error codes, from its v2.2 documentation.
ALREADY_REGISTERED = -18019901
NOT_REGISTERED = -18019902
NO_TRACKING_INFO = -18019909
AUTH_CODES = frozenset(
    {
        -18010001,  # IP address not in the whitelist
        -18010002,  # invalid access token
        -18010004,  # account disabled
        -18010005,  # unauthorized access
        -18019908,  # quota used up: nothing works until more is bought
    }
)
RATE_CODES = frozenset({-18010014, -18019907})  # request limit, daily limit
UNAVAILABLE_CODES = frozenset({-18010003})  # internal service error

STATUS_FOR_MAIN_STATUS: dict[str, ShipmentStatus] = {
    "NotFound": S.PENDING,
    "InfoReceived": S.PENDING,
    "InTransit": S.IN_TRANSIT,
    "OutForDelivery": S.OUT_FOR_DELIVERY,
    "AvailableForPickup": S.AVAILABLE_FOR_PICKUP,
    "DeliveryFailure": S.DELIVERY_FAILED,
    "Exception": S.EXCEPTION,
    "Delivered": S.DELIVERED,
    "Expired": S.EXPIRED,
}
# Sub-statuses whose meaning differs from their main status.
STATUS_FOR_SUB_STATUS: dict[str, ShipmentStatus] = {
    "Exception_Returning": S.RETURNED,
    "Exception_Returned": S.RETURNED,
}


class _Address(SnakeModel):
    country: str | None = None
    state: str | None = None
    city: str | None = None


class _Event(SnakeModel):
    time_iso: str | None = None
    time_utc: str | None = None
    description: str | None = None
    location: str | None = None
    sub_status: str | None = None
    address: _Address | None = None


class _Provider(SnakeModel):
    events: list[_Event] = Field(default_factory=list)


class _Tracking(SnakeModel):
    providers: list[_Provider] = Field(default_factory=list)


class _LatestStatus(SnakeModel):
    status: str | None = None
    sub_status: str | None = None
    sub_status_descr: str | None = None


class _DateRange(SnakeModel):
    start: str | None = Field(default=None, alias="from")
    end: str | None = Field(default=None, alias="to")


class _TimeMetrics(SnakeModel):
    estimated_delivery_date: _DateRange | None = None


class _TrackInfo(SnakeModel):
    latest_status: _LatestStatus | None = None
    latest_event: _Event | None = None
    time_metrics: _TimeMetrics | None = None
    tracking: _Tracking | None = None


class _Accepted(SnakeModel):
    number: str
    track_info: _TrackInfo | None = None


class _Error(SnakeModel):
    code: int
    message: str | None = None


class _Rejected(SnakeModel):
    number: str
    error: _Error


class _Data(SnakeModel):
    accepted: list[_Accepted] = Field(default_factory=list)
    rejected: list[_Rejected] = Field(default_factory=list)
    errors: list[_Error] = Field(default_factory=list)


class _Response(SnakeModel):
    code: int
    data: _Data | None = None


def map_status(status: str | None, sub_status: str | None = None) -> ShipmentStatus:
    """Return the canonical status of a 17TRACK status and sub-status.

    A sub-status alone ("InTransit_PickedUp") maps through its main status,
    the part before the underscore.
    """
    if sub_status and sub_status in STATUS_FOR_SUB_STATUS:
        return STATUS_FOR_SUB_STATUS[sub_status]
    main = status or (sub_status or "").split("_", 1)[0]
    return STATUS_FOR_MAIN_STATUS.get(main, S.UNKNOWN)


class SeventeenTrackAdapter(HttpAdapter):
    """17TRACK, for every carrier slug that no direct adapter serves."""

    name = "seventeentrack"
    carriers: frozenset[str] = frozenset()
    max_batch = 40
    # NOTE: 3 requests a second per key is a third-party figure, not from
    # 17TRACK's documentation. TODO(confirm 17TRACK's request rate limit)
    min_interval = 0.34
    # TODO(map carrier slugs to 17TRACK carrier codes so that register need
    # not rely on 17TRACK's carrier detection)

    def has_credentials(self, credentials: Credentials | None = None) -> bool:
        return bool((credentials or self.credentials).api_key)

    async def _track_batch(
        self, batch: list[TrackingRequest], credentials: Credentials
    ) -> Mapping[str, TrackingResult]:
        numbers = list(dict.fromkeys(request.number for request in batch))
        data = await self._call("gettrackinfo", numbers, credentials)
        results = {
            number_key(entry.number): self._result(entry) for entry in data.accepted
        }
        unregistered = []
        for entry in data.rejected:
            self._raise_for_code(entry.error, credentials)
            if entry.error.code == NOT_REGISTERED:
                unregistered.append(entry.number)
            else:
                results[number_key(entry.number)] = _rejected_result(entry)
        if unregistered:
            results.update(await self._register(unregistered, credentials))
        return results

    async def _register(
        self, numbers: list[str], credentials: Credentials
    ) -> dict[str, TrackingResult]:
        data = await self._call("register", numbers, credentials)
        results = {}
        for entry in data.accepted:
            log.info("tracking number %s: registered with 17TRACK", entry.number)
            results[number_key(entry.number)] = TrackingResult.not_found(
                entry.number, "registered with 17TRACK; no tracking data yet"
            )
        for rejected in data.rejected:
            self._raise_for_code(rejected.error, credentials)
            if rejected.error.code == ALREADY_REGISTERED:
                result = TrackingResult.not_found(
                    rejected.number, "registered with 17TRACK; no tracking data yet"
                )
            else:
                result = _rejected_result(rejected)
            results[number_key(rejected.number)] = result
        return results

    async def _call(
        self, action: str, numbers: list[str], credentials: Credentials
    ) -> _Data:
        request = self._client.build_request(
            "POST",
            f"{self.base_url}{API_PATH}/{action}",
            json=[{"number": number} for number in numbers],
            headers={"17token": credentials.api_key, "Accept": "application/json"},
        )
        response = await send(
            self._client, self.name, request, credential=credentials.label
        )
        if response.status_code != 200:
            raise CarrierResponseError(
                self.name,
                f"{action} returned {response.status_code}: {excerpt(response)}",
            )
        body = parse_model(_Response, decode_json(response, self.name), self.name)
        if body.code != 0:
            errors = body.data.errors if body.data else []
            self._raise_for_code(_Error(code=body.code), credentials, errors)
            raise CarrierResponseError(
                self.name,
                f"{action} failed with code {body.code}: {_messages(errors)}",
            )
        if body.data is None:
            raise CarrierResponseError(self.name, f"{action} returned no data")
        return body.data

    def _raise_for_code(
        self,
        error: _Error,
        credentials: Credentials,
        details: list[_Error] | None = None,
    ) -> None:
        """Raise the CarrierError for a code that concerns the whole key."""
        message = f"17TRACK code {error.code}: {error.message or _messages(details)}"
        failure: CarrierError | None = None
        if error.code in AUTH_CODES:
            failure = CarrierAuthError(self.name, message, credentials.label)
        elif error.code in RATE_CODES:
            failure = CarrierRateLimited(self.name, message)
        elif error.code in UNAVAILABLE_CODES:
            failure = CarrierUnavailable(self.name, message)
        if failure is not None:
            raise failure

    def _result(self, entry: _Accepted) -> TrackingResult:
        info = entry.track_info
        events = self._events(entry.number, info)
        latest = info.latest_status if info else None
        if latest is None or (latest.status in (None, "NotFound") and not events):
            return TrackingResult.not_found(
                entry.number, "17TRACK has no tracking data yet"
            )
        status = map_status(latest.status, latest.sub_status)
        if status == S.UNKNOWN:
            log.warning(
                "tracking number %s: 17TRACK status %r/%r is not in the mapping; "
                "stored as unknown",
                entry.number,
                latest.status,
                latest.sub_status,
            )
        last_event = info.latest_event if info else None
        return TrackingResult(
            number=entry.number,
            found=True,
            status=status,
            events=events,
            estimated_delivery=_estimated_delivery(info),
            raw_code=latest.sub_status or latest.status,
            raw_text=latest.sub_status_descr
            or (last_event.description if last_event else None),
        )

    def _events(
        self, number: str, info: _TrackInfo | None
    ) -> tuple[TrackingEvent, ...]:
        if info is None or info.tracking is None:
            return ()
        events = []
        seen = set()
        # The origin and destination carriers may report the same checkpoint.
        for provider in info.tracking.providers:
            for raw in provider.events:
                event = self._event(number, raw)
                if event is None:
                    continue
                key = (event.occurred_at, event.raw_text)
                if key not in seen:
                    seen.add(key)
                    events.append(event)
        return sorted_events(events)

    def _event(self, number: str, raw: _Event) -> TrackingEvent | None:
        occurred_at = parse_timestamp(raw.time_utc) or parse_timestamp(raw.time_iso)
        if occurred_at is None:
            log.warning(
                "tracking number %s: 17TRACK event without a valid time %r skipped",
                number,
                raw.time_iso,
            )
            return None
        address = raw.address
        return TrackingEvent(
            occurred_at=occurred_at,
            status=map_status(None, raw.sub_status),
            raw_code=raw.sub_status,
            raw_text=raw.description,
            location=raw.location
            or join_location(
                address.city if address else None,
                address.state if address else None,
                address.country if address else None,
            ),
        )


def _rejected_result(entry: _Rejected) -> TrackingResult:
    detail = f"17TRACK code {entry.error.code}: {entry.error.message or ''}".strip()
    if entry.error.code == NO_TRACKING_INFO:
        return TrackingResult.not_found(entry.number, detail)
    # Carrier not detected, invalid number and the like: 17TRACK rejects the
    # number itself, and asking again will not change that.
    return TrackingResult.not_found(entry.number, error=detail)


def _estimated_delivery(info: _TrackInfo | None) -> date | None:
    metrics = info.time_metrics if info else None
    window = metrics.estimated_delivery_date if metrics else None
    if window is None:
        return None
    return parse_date(window.end) or parse_date(window.start)


def _messages(errors: list[_Error] | None) -> str:
    texts = [f"{e.code} {e.message}" for e in errors or [] if e.message]
    return "; ".join(texts) or "no message"

"""The interface every carrier adapter implements, and the data it returns.

An adapter sends a batch of tracking numbers to one carrier's tracking API
and returns one ``TrackingResult`` per requested number, in request order.
Each result carries the carrier's events mapped to the canonical statuses,
with the carrier's raw code and text kept on every event. Errors that hit the
whole request raise a ``CarrierError`` (see ``errors``); a number the carrier
does not know is a result with ``found`` False.

The adapter does not wait between requests: it declares ``min_interval`` and
``max_batch`` from the carrier's documented limits, and the poller schedules
its requests by them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Protocol, TypeVar, runtime_checkable

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from mailhandler.carriers.errors import CarrierAuthError, CarrierResponseError
from mailhandler.store.models import ShipmentStatus
from mailhandler.triggers import StatusEvent

log = logging.getLogger("bcctrack.poller")

DEFAULT_TIMEOUT = 20.0
DEFAULT_CREDENTIAL = "default"


@dataclass(frozen=True)
class Credentials:
    """One set of credentials for a carrier API.

    ``label`` names the credential in logs and errors (``default`` for the
    configured one, or the shop's slug for a shop's own), because the secret
    values never appear there.
    """

    label: str = DEFAULT_CREDENTIAL
    api_key: str = field(default="", repr=False)
    client_id: str = ""
    client_secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class TrackingRequest:
    """One tracking number to look up at one carrier.

    ``credentials`` are a shop's own, for carriers that show a shop only its
    own parcels; None uses the adapter's configured credentials.
    ``shipment_id`` is only used to start log lines with the shipment.
    """

    number: str
    carrier: str
    credentials: Credentials | None = None
    shipment_id: int | None = None


@dataclass(frozen=True)
class TrackingEvent:
    """One carrier checkpoint, mapped to a canonical status.

    ``raw_code`` and ``raw_text`` are the carrier's own status code and
    description, unchanged. ``occurred_at`` is timezone-aware UTC.
    """

    occurred_at: datetime
    status: ShipmentStatus
    raw_code: str | None = None
    raw_text: str | None = None
    location: str | None = None

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None:
            raise ValueError(f"naive event time {self.occurred_at!r}: pass UTC")
        object.__setattr__(self, "occurred_at", self.occurred_at.astimezone(UTC))

    def to_status_event(self, source: str) -> StatusEvent:
        """Return the event as the poller stores it, from adapter ``source``."""
        return StatusEvent(
            status=self.status,
            occurred_at=self.occurred_at,
            source=source,
            raw_code=self.raw_code,
            raw_text=self.raw_text,
            location=self.location,
        )


@dataclass(frozen=True)
class TrackingResult:
    """The outcome of tracking one number at one carrier.

    ``found`` is False when the carrier does not know the number (yet); the
    status is then ``pending`` and there are no events. ``error`` is set when
    the carrier rejected the number itself (an invalid format, say), as
    opposed to not knowing it. Events are sorted oldest first.
    ``estimated_delivery`` is the carrier's expected delivery date.
    """

    number: str
    found: bool
    status: ShipmentStatus = ShipmentStatus.PENDING
    events: tuple[TrackingEvent, ...] = ()
    estimated_delivery: date | None = None
    raw_code: str | None = None
    raw_text: str | None = None
    error: str | None = None

    @classmethod
    def not_found(
        cls, number: str, detail: str | None = None, *, error: str | None = None
    ) -> TrackingResult:
        """Return the result for a number the carrier does not know."""
        return cls(number=number, found=False, raw_text=detail, error=error)


@runtime_checkable
class CarrierAdapter(Protocol):
    """The interface the poller uses for every carrier API.

    ``carriers`` lists the carrier slugs the adapter serves; an aggregator
    lists none and serves whatever the registry sends it. ``max_batch`` is
    the most numbers one ``track`` call takes, ``min_interval`` the seconds
    to leave between calls with one credential.
    """

    name: str
    carriers: frozenset[str]
    max_batch: int
    min_interval: float

    def has_credentials(self, credentials: Credentials | None = None) -> bool:
        """Tell whether ``credentials`` (or the configured ones) are complete."""
        ...

    async def track(self, requests: Sequence[TrackingRequest]) -> list[TrackingResult]:
        """Return one result per request, in order, or raise a CarrierError."""
        ...

    async def aclose(self) -> None:
        """Close the adapter's HTTP connections."""
        ...


class HttpAdapter:
    """The shared part of the adapters: batching, credentials and results.

    A subclass sets the class attributes, implements ``has_credentials`` and
    ``_track_batch``, and returns its results keyed by ``number_key``.
    """

    name: str
    carriers: frozenset[str] = frozenset()
    max_batch: int = 1
    min_interval: float = 1.0

    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials or Credentials()
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout))

    def has_credentials(self, credentials: Credentials | None = None) -> bool:
        raise NotImplementedError

    async def track(self, requests: Sequence[TrackingRequest]) -> list[TrackingResult]:
        batch = list(requests)
        if not batch:
            return []
        if len(batch) > self.max_batch:
            raise ValueError(
                f"{self.name}: {len(batch)} numbers in one request; "
                f"split the batch into at most {self.max_batch}"
            )
        credentials = self._batch_credentials(batch)
        if not self.has_credentials(credentials):
            raise CarrierAuthError(
                self.name,
                f"no credentials configured for credential {credentials.label!r}",
                credentials.label,
            )
        by_number = await self._track_batch(batch, credentials)
        return [self._result_for(request, by_number) for request in batch]

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self: _Adapter) -> _Adapter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _track_batch(
        self, batch: list[TrackingRequest], credentials: Credentials
    ) -> Mapping[str, TrackingResult]:
        raise NotImplementedError

    def _batch_credentials(self, batch: list[TrackingRequest]) -> Credentials:
        chosen = {request.credentials for request in batch}
        if len(chosen) > 1:
            raise ValueError(
                f"{self.name}: one request mixes credentials; "
                "group the batch by credentials"
            )
        return chosen.pop() or self.credentials

    def _result_for(
        self, request: TrackingRequest, by_number: Mapping[str, TrackingResult]
    ) -> TrackingResult:
        result = by_number.get(number_key(request.number))
        if result is None:
            # The carrier left the number out of its response. Reporting it as
            # not found keeps the shipment scheduled for the next round.
            log.warning(
                "%s: %s returned no entry for %s; treated as not found",
                subject(request),
                self.name,
                request.number,
            )
            return TrackingResult.not_found(
                request.number, f"missing from the {self.name} response"
            )
        if result.number != request.number:
            return _with_number(result, request.number)
        return result


class CamelModel(BaseModel):
    """A response model whose JSON names are the camelCase of its fields.

    Unknown fields are ignored, so that a carrier adding fields breaks
    nothing, and numbers are taken where a string is expected, because
    carriers send ids and codes both ways.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        coerce_numbers_to_str=True,
    )


class SnakeModel(BaseModel):
    """A response model whose JSON names are its field names."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


_Adapter = TypeVar("_Adapter", bound=HttpAdapter)
_Model = TypeVar("_Model", bound=BaseModel)


def _with_number(result: TrackingResult, number: str) -> TrackingResult:
    return TrackingResult(
        number=number,
        found=result.found,
        status=result.status,
        events=result.events,
        estimated_delivery=result.estimated_delivery,
        raw_code=result.raw_code,
        raw_text=result.raw_text,
        error=result.error,
    )


def number_key(number: str) -> str:
    """Return ``number`` without spaces and in upper case, to match responses."""
    return re.sub(r"\s+", "", number).upper()


def subject(request: TrackingRequest) -> str:
    """Return how log lines name the request: its shipment, else its number."""
    if request.shipment_id is not None:
        return f"shipment {request.shipment_id}"
    return f"tracking number {request.number}"


def parse_model(model: type[_Model], data: object, adapter: str) -> _Model:
    """Validate a decoded response against ``model``, or raise.

    Raises CarrierResponseError naming the first fields that did not match,
    because a changed response shape must not pass as "no events".
    """
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or '(root)'}: {item['msg']}"
            for item in error.errors()[:3]
        )
        raise CarrierResponseError(
            adapter, f"unexpected response shape: {problems}"
        ) from error


def parse_timestamp(value: str | None) -> datetime | None:
    """Return an ISO 8601 timestamp as UTC, or None when it is not one.

    A timestamp without an offset is taken as UTC; each adapter notes where
    its carrier sends such values.
    """
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_date(value: str | None) -> date | None:
    """Return the date of ``YYYY-MM-DD``, ``YYYYMMDD`` or an ISO timestamp.

    A timestamp keeps the calendar date of its own offset, which is the
    carrier's local date of delivery.
    """
    if not value:
        return None
    text = value.strip()
    for pattern in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            pass
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        return None


def parse_utc_offset(value: str | None) -> timezone | None:
    """Return the zone of an offset such as ``-05:00`` or ``-7:00``, or None."""
    match = re.fullmatch(r"([+-])(\d{1,2}):(\d{2})", (value or "").strip())
    if match is None:
        return None
    delta = timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
    return timezone(-delta if match.group(1) == "-" else delta)


def join_location(*parts: str | None) -> str | None:
    """Join the non-empty location parts with commas, or return None."""
    cleaned = [part.strip() for part in parts if part and part.strip()]
    return ", ".join(cleaned) or None


def sorted_events(events: list[TrackingEvent]) -> tuple[TrackingEvent, ...]:
    """Return the events oldest first, keeping the carrier's order on ties."""
    return tuple(sorted(events, key=lambda event: event.occurred_at))


def match_text(
    rules: Sequence[tuple[re.Pattern[str], ShipmentStatus]], *texts: str | None
) -> ShipmentStatus | None:
    """Return the status of the first rule whose pattern occurs in ``texts``."""
    joined = " ".join(text for text in texts if text)
    for pattern, status in rules:
        if pattern.search(joined):
            return status
    return None


def latest_status(
    events: tuple[TrackingEvent, ...], fallback: ShipmentStatus
) -> ShipmentStatus:
    """Return the status of the newest event, or ``fallback`` without events."""
    return events[-1].status if events else fallback

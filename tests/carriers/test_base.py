"""Retry-After parsing, timestamps and the shared result handling."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from mailhandler.carriers import TrackingEvent, parse_retry_after
from mailhandler.carriers.base import number_key, parse_date, parse_timestamp
from mailhandler.store.models import ShipmentStatus as S

NOW = datetime(2026, 9, 20, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30", 30.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("Sun, 20 Sep 2026 12:02:00 GMT", 120.0),
        ("Sun, 20 Sep 2026 11:00:00 GMT", 0.0),
        ("-5", None),
        ("nan", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-09-20T09:15:00+02:00", datetime(2026, 9, 20, 7, 15, tzinfo=UTC)),
        ("2026-09-20T07:15:00Z", datetime(2026, 9, 20, 7, 15, tzinfo=UTC)),
        ("2026-09-20T07:15:00", datetime(2026, 9, 20, 7, 15, tzinfo=UTC)),
        ("20.09.2026", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_timestamp(value: str | None, expected: datetime | None) -> None:
    assert parse_timestamp(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-09-21", date(2026, 9, 21)),
        ("20260921", date(2026, 9, 21)),
        ("2026-09-21T23:30:00-07:00", date(2026, 9, 21)),
        ("soon", None),
        (None, None),
    ],
)
def test_parse_date(value: str | None, expected: date | None) -> None:
    assert parse_date(value) == expected


def test_event_time_converted_to_utc() -> None:
    event = TrackingEvent(
        occurred_at=datetime(2026, 9, 20, 9, 0, tzinfo=timezone(timedelta(hours=2))),
        status=S.IN_TRANSIT,
        raw_code="transit",
        raw_text="Processed",
    )

    assert event.occurred_at == datetime(2026, 9, 20, 7, 0, tzinfo=UTC)
    assert event.occurred_at.tzinfo == UTC


def test_event_rejects_naive_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        TrackingEvent(occurred_at=datetime(2026, 9, 20, 9, 0), status=S.IN_TRANSIT)


def test_event_to_status_event_keeps_raw_fields() -> None:
    event = TrackingEvent(
        occurred_at=NOW,
        status=S.DELIVERED,
        raw_code="DL",
        raw_text="Delivered",
        location="MEMPHIS, TN, US",
    )

    status_event = event.to_status_event("fedex")

    assert status_event.status == S.DELIVERED
    assert status_event.occurred_at == NOW
    assert status_event.source == "fedex"
    assert status_event.raw_code == "DL"
    assert status_event.raw_text == "Delivered"
    assert status_event.location == "MEMPHIS, TN, US"


def test_number_key_ignores_spaces_and_case() -> None:
    assert number_key(" 1z 023e2x ") == "1Z023E2X"

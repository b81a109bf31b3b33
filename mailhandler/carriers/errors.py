"""Errors that a carrier adapter raises for a whole request.

Every error derives from ``CarrierError``, so the poller can catch one class
and keep every shipment of the batch for the next round::

    CarrierError
    ├── CarrierAuthError       401 or 403, or a rejected token request: the
    │                          credential is wrong, blocked or out of quota.
    │                          The poller pauses that credential.
    ├── CarrierRateLimited     429 or the carrier's own rate-limit code, with
    │                          ``retry_after`` in seconds when the carrier
    │                          sent ``Retry-After``.
    ├── CarrierUnavailable     5xx, a timeout or a connection error. The
    │                          poller backs off and tries again.
    └── CarrierResponseError   malformed JSON or a shape the adapter does not
                               know, with the detail.

A tracking number the carrier does not know is not an error: the adapter
returns a ``TrackingResult`` whose ``found`` is False.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class CarrierError(Exception):
    """A carrier request failed; ``adapter`` names the adapter that sent it."""

    def __init__(self, adapter: str, message: str) -> None:
        super().__init__(f"{adapter}: {message}")
        self.adapter = adapter


class CarrierAuthError(CarrierError):
    """The carrier rejected the credential (401, 403, or a token request).

    ``credential`` is the credential's label (``default``, or the shop's
    slug), never a secret, so that the poller can pause exactly that
    credential. ``status`` is the HTTP status when there was one.
    """

    def __init__(
        self,
        adapter: str,
        message: str,
        credential: str,
        *,
        status: int | None = None,
    ) -> None:
        super().__init__(adapter, message)
        self.credential = credential
        self.status = status


class CarrierRateLimited(CarrierError):  # noqa: N818 (the name says the state)
    """The carrier responded 429; ``retry_after`` is in seconds, or None."""

    def __init__(
        self, adapter: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(adapter, message)
        self.retry_after = retry_after


class CarrierUnavailable(CarrierError):  # noqa: N818 (the name says the state)
    """The carrier could not be reached, timed out, or responded 5xx."""


class CarrierResponseError(CarrierError):
    """The carrier responded with malformed JSON or an unexpected shape."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Return the seconds to wait from a ``Retry-After`` header value.

    The header contains either a number of seconds or an HTTP date (RFC 9110,
    section 10.2.3). A date in the past gives 0. A missing or invalid value
    gives None, and the poller then uses its own backoff.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until(text, now or datetime.now(UTC))
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _seconds_until(http_date: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())

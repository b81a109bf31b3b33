"""Sending one carrier request and turning HTTP failures into CarrierErrors."""

from __future__ import annotations

import json

import httpx

from mailhandler.carriers.errors import (
    CarrierAuthError,
    CarrierRateLimited,
    CarrierResponseError,
    CarrierUnavailable,
    parse_retry_after,
)

# Enough of an error body to show the carrier's message in a log line.
_BODY_EXCERPT = 200


async def send(
    client: httpx.AsyncClient,
    adapter: str,
    request: httpx.Request,
    *,
    credential: str,
) -> httpx.Response:
    """Send ``request`` and return the response unless it is a failure.

    Raises CarrierAuthError for 401 and 403 (``status`` tells which),
    CarrierRateLimited for 429, and CarrierUnavailable for 5xx, timeouts and
    connection errors. Other statuses, 404 included, go back to the adapter,
    which knows what they mean for its carrier.
    """
    where = f"{request.method} {request.url.copy_with(query=None)}"
    try:
        response = await client.send(request)
    except httpx.TimeoutException as error:
        raise CarrierUnavailable(adapter, f"{where} timed out") from error
    except httpx.TransportError as error:
        raise CarrierUnavailable(adapter, f"{where} failed: {error!r}") from error

    status = response.status_code
    if status in (401, 403):
        raise CarrierAuthError(
            adapter,
            f"{where} returned {status}: {excerpt(response)}",
            credential,
            status=status,
        )
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise CarrierRateLimited(
            adapter, f"{where} returned 429: {excerpt(response)}", retry_after
        )
    if status >= 500:
        raise CarrierUnavailable(
            adapter, f"{where} returned {status}: {excerpt(response)}"
        )
    return response


def decode_json(response: httpx.Response, adapter: str) -> object:
    """Return the decoded JSON body, or raise CarrierResponseError."""
    try:
        data: object = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CarrierResponseError(
            adapter,
            f"malformed JSON in the {response.status_code} response to "
            f"{response.request.method} {response.request.url.path}: {error}",
        ) from error
    return data


def excerpt(response: httpx.Response) -> str:
    """Return the start of the response body for an error message."""
    text = response.text.strip().replace("\n", " ")
    if len(text) > _BODY_EXCERPT:
        return text[:_BODY_EXCERPT] + "..."
    return text or "(empty body)"

"""Fixtures for the carrier adapter tests: a fake carrier and a loopback guard."""

from __future__ import annotations

import socket

import httpx
import pytest

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio, the loop bcctrack runs on."""
    return "asyncio"


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test whose adapter would send traffic off this machine."""
    original = httpx.AsyncHTTPTransport.handle_async_request

    async def guarded(
        self: httpx.AsyncHTTPTransport, request: httpx.Request
    ) -> httpx.Response:
        if request.url.host not in LOOPBACK:
            raise AssertionError(f"test request to non-loopback {request.url.host}")
        return await original(self, request)

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", guarded)


@pytest.fixture
def closed_port_url() -> str:
    """The URL of a loopback port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"

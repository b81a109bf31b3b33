"""Test support: free ports, an SMTP sink, listeners in a thread, CLI runs."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import Engine

from mailhandler.intake import start_intake
from mailhandler.settings import Settings


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def crlf(raw: bytes) -> bytes:
    """Return ``raw`` with every line ending as CRLF, as SMTP carries it."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@dataclass
class SinkMessage:
    """One message an SMTP sink received."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> Message:
        """The parsed message."""
        return message_from_bytes(self.raw, policy=default)


@dataclass
class SinkHandler:
    """aiosmtpd handler that keeps what it receives, for an outbound relay."""

    received: list[SinkMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            self.received.append(
                SinkMessage(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.original_content,
                )
            )
        return "250 2.0.0 Message accepted"

    def wait_for(self, count: int, timeout: float = 20.0) -> list[SinkMessage]:
        """Wait until ``count`` messages arrived; return all received."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        with self.lock:
            return list(self.received)


@contextmanager
def smtp_sink(smtputf8: bool = False) -> Iterator[tuple[SinkHandler, int]]:
    """Run a real aiosmtpd server on loopback that keeps every message."""
    handler = SinkHandler()
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=smtputf8
    )
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@contextmanager
def running_intake(
    engine: Engine,
    settings: Settings,
    on_stored: Callable[[], None] | None = None,
    resolver: Any = None,
) -> Iterator[int]:
    """Run bcctrack's SMTP intake in a background event loop; yield its port."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(
        start_intake(engine, settings, on_stored=on_stored, resolver=resolver), loop
    ).result(timeout=10)
    port: int = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:

        async def close() -> None:
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@contextmanager
def running_web(engine: Engine, settings: Settings) -> Iterator[int]:
    """Run bcctrack's HTTP listener in a background event loop; yield its port.

    ``settings.web_port`` 0 binds a free port.
    """
    from mailhandler.web import start_web

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = asyncio.run_coroutine_threadsafe(start_web(engine, settings), loop).result(
        timeout=10
    )
    port: int = runner.addresses[0][1]
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def bcctrack_executable() -> str:
    """Return the path of the installed ``bcctrack`` command."""
    beside_python = Path(sys.executable).parent / "bcctrack"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("bcctrack")
    if found is None:
        raise RuntimeError("the bcctrack command is not installed")
    return found


def cli_environment(data_dir: Path, **settings: str) -> dict[str, str]:
    """Return an environment for a bcctrack subprocess with these settings."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("BCCTRACK_")
    }
    environment["BCCTRACK_DATA_DIR"] = str(data_dir)
    for key, value in settings.items():
        environment[f"BCCTRACK_{key.upper()}"] = value
    return environment


def run_cli(
    environment: dict[str, str], *arguments: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``bcctrack ARGUMENTS`` to completion and return its output."""
    return subprocess.run(
        [bcctrack_executable(), *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


@contextmanager
def serving(
    environment: dict[str, str], *arguments: str, port: int, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``bcctrack serve`` until the block ends; wait for its listener."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [bcctrack_executable(), "serve", *arguments],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        if port:
            wait_for_port(port, process, log_path)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 30
) -> None:
    """Wait until something listens on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = log_path.read_text()
            raise RuntimeError(
                f"bcctrack serve exited with {process.returncode}:\n{log}"
            )
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}:\n{log_path.read_text()}")


def wait_until(
    condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05
) -> Any:
    """Poll ``condition`` until it returns a true value; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(interval)


LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def guard_loopback(monkeypatch: Any) -> None:
    """Make any httpx request to a host other than loopback fail the test."""
    import httpx

    original = httpx.AsyncHTTPTransport.handle_async_request

    async def guarded(
        self: httpx.AsyncHTTPTransport, request: httpx.Request
    ) -> httpx.Response:
        if request.url.host not in LOOPBACK_HOSTS:
            raise AssertionError(f"test request to non-loopback {request.url.host}")
        return await original(self, request)

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", guarded)


def add_shipment(
    engine: Engine,
    shop_id: int,
    tracking_number: str,
    carrier: str | None,
    customer_email: str | None = "customer@example.com",
    language: str | None = None,
    order_number: str | None = "A-1001",
) -> int:
    """Store an order with one pending shipment, as extraction would; return it."""
    from mailhandler.store import transaction
    from mailhandler.store.models import Order, Shipment

    with transaction(engine) as session:
        order = Order(
            shop_id=shop_id,
            order_number=order_number,
            customer_email=customer_email,
            customer_name="Chris Customer",
            language=language,
        )
        session.add(order)
        session.flush()
        assert order.id is not None
        shipment = Shipment(
            shop_id=shop_id,
            order_id=order.id,
            tracking_number=tracking_number,
            carrier=carrier,
            tracking_url=f"https://track.example/{tracking_number}",
        )
        session.add(shipment)
        session.flush()
        assert shipment.id is not None
        return shipment.id

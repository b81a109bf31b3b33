"""Crash-safety load: send mail concurrently while SIGKILLing ``bcctrack serve``.

Used by the bounded test in tests/test_crash_safety.py and by the longer run
in bench/crash.py. Senders behave like a mail server: a message that did not
get a 250 is sent again later. A killer kills the service at random moments
and starts it again on the same port. At the end, the store and the outbound
SMTP sink are checked for lost, duplicated and half-stored messages and for
duplicated customer updates.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import smtplib
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select
from sqlmodel import Session

from mailhandler.store import open_store
from mailhandler.store.models import (
    InboundMessage,
    InboundState,
    Notification,
    NotificationState,
    Shipment,
)
from support import (
    SinkHandler,
    bcctrack_executable,
    cli_environment,
    free_port,
    run_cli,
    smtp_sink,
    wait_for_port,
)

SHOP_DOMAIN = "crash-shop.example"
_FINAL_INBOUND = {
    InboundState.PROCESSED,
    InboundState.IGNORED,
    InboundState.QUARANTINED,
    InboundState.FAILED,
}


def ups_check_digit(body: str) -> str:
    """Return the UPS check digit of the 15 characters after "1Z"."""
    total = 0
    for index, char in enumerate(body):
        value = int(char) if char.isdigit() else (ord(char) - 63) % 10
        total += value * 2 if index % 2 else value
    return str((10 - total % 10) % 10)


def tracking_number(index: int) -> str:
    """Return a valid UPS tracking number unique to ``index``."""
    body = f"V{index:04d}03{index:08d}"[:15]
    return "1Z" + body + ups_check_digit(body)


def shipping_email(index: int) -> bytes:
    """Return a shipping confirmation with its own order and tracking number."""
    return (
        f"From: Crash Shop <orders@{SHOP_DOMAIN}>\r\n"
        f"To: Customer {index} <customer{index}@example.com>\r\n"
        f"Subject: Your order CR{index:05d} has shipped\r\n"
        f"Message-ID: <crash-{index}@{SHOP_DOMAIN}>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Hello Customer {index},\r\n\r\nyour order CR{index:05d} has shipped "
        "with UPS.\r\n"
        f"Order number: CR{index:05d}\r\nTracking number: {tracking_number(index)}\r\n"
        + "Padding line to give the message some size.\r\n"
        * (index % 50)
    ).encode()


@dataclass
class CrashReport:
    """Figures of one crash-safety run."""

    sent: int = 0
    acknowledged: int = 0
    attempts: int = 0
    refused: int = 0
    kills: int = 0
    lost: list[int] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    half_stored: list[int] = field(default_factory=list)
    unprocessed: list[int] = field(default_factory=list)
    updates_received: int = 0
    updates_confirmed: int = 0
    duplicated_updates: list[str] = field(default_factory=list)
    unconfirmed_updates: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Return the figures as printable lines."""
        return [
            f"messages sent:          {self.sent}",
            f"SMTP attempts:          {self.attempts}",
            f"acknowledged (250):     {self.acknowledged}",
            f"refused or dropped:     {self.refused}",
            f"SIGKILLs:               {self.kills}",
            f"lost:                   {len(self.lost)}",
            f"duplicated:             {len(self.duplicated)}",
            f"half-stored:            {len(self.half_stored)}",
            f"not processed:          {len(self.unprocessed)}",
            f"updates received:       {self.updates_received}",
            f"updates confirmed sent: {self.updates_confirmed}",
            f"duplicated updates:     {len(self.duplicated_updates)}",
            f"unconfirmed updates:    {self.unconfirmed_updates}",
            f"seconds:                {self.seconds:.1f}",
            *(f"error: {error}" for error in self.errors),
        ]


class _Service:
    """``bcctrack serve`` that the killer stops with SIGKILL and starts again."""

    def __init__(self, environment: dict[str, str], port: int, log_path: Path) -> None:
        self.environment = environment
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [bcctrack_executable(), "serve"],
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.process, self.log_path, timeout=60)

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def _send_all(
    port: int,
    address: str,
    count: int,
    senders: int,
    report: CrashReport,
    acknowledged: dict[int, str],
    deadline: float,
    pace: float,
) -> None:
    pending: queue.Queue[int] = queue.Queue()
    for index in range(count):
        pending.put(index)
    lock = threading.Lock()

    def sender() -> None:
        while time.monotonic() < deadline:
            try:
                index = pending.get(timeout=0.5)
            except queue.Empty:
                with lock:
                    if len(acknowledged) == count:
                        return
                continue
            with lock:
                report.attempts += 1
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
                    client.ehlo()
                    client.mail(f"bounce@{SHOP_DOMAIN}")
                    client.rcpt(address)
                    code, reply = client.data(shipping_email(index))
                if code != 250:
                    raise smtplib.SMTPDataError(code, reply)
            except (OSError, smtplib.SMTPException):
                # A real mail server keeps the message and tries again later.
                with lock:
                    report.refused += 1
                time.sleep(0.2)
                pending.put(index)
                continue
            with lock:
                acknowledged[index] = reply.decode()
            time.sleep(pace)

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _killer(
    service: _Service,
    stop: threading.Event,
    report: CrashReport,
    interval: tuple[float, float],
    rng: random.Random,
    min_kills: int,
) -> None:
    # After the senders finish, the killer goes on until min_kills, so that
    # kills also land while the backlog is processed and updates are sent.
    try:
        while True:
            stopped = stop.wait(rng.uniform(*interval))
            if stopped and report.kills >= min_kills:
                return
            service.kill()
            report.kills += 1
            service.start()
    except Exception as error:  # reported, so that the test shows it
        report.errors.append(f"killer: {type(error).__name__}: {error}")


def _settled(engine: Engine, count: int) -> bool:
    with Session(engine) as session:
        states = list(session.scalars(select(InboundMessage.state)))
        notifications = list(session.scalars(select(Notification.state)))
    return (
        len(states) >= count
        and all(state in _FINAL_INBOUND for state in states)
        and NotificationState.PENDING not in notifications
    )


def _check(
    engine: Engine, count: int, acknowledged: dict[int, str], sink: SinkHandler
) -> CrashReport:
    report = CrashReport()
    with Session(engine) as session:
        messages = list(session.scalars(select(InboundMessage)))
        notifications = list(session.scalars(select(Notification)))
        shipments = list(session.scalars(select(Shipment)))
    by_message_id = Counter(message.message_id for message in messages)
    report.duplicated = [mid for mid, n in by_message_id.items() if mid and n > 1]
    stored = {message.message_id: message for message in messages}
    for index in range(count):
        message = stored.get(f"crash-{index}@{SHOP_DOMAIN}")
        if message is None:
            if index in acknowledged:
                report.lost.append(index)
            continue
        assert message.id is not None
        if message.raw != shipping_email(index):
            report.half_stored.append(message.id)
        if message.state != InboundState.PROCESSED:
            report.unprocessed.append(message.id)
    per_shipment = Counter(n.shipment_id for n in notifications)
    report.duplicated_updates += [str(s) for s, n in per_shipment.items() if n > 1]
    received = Counter(m.message["Message-ID"] for m in sink.received)
    report.duplicated_updates += [mid for mid, n in received.items() if n > 1]
    report.updates_received = len(sink.received)
    report.updates_confirmed = sum(
        1 for n in notifications if n.state == NotificationState.SENT
    )
    report.unconfirmed_updates = sum(
        1 for n in notifications if n.state == NotificationState.UNCONFIRMED
    )
    if len(shipments) != len({s.tracking_number for s in shipments}):
        report.duplicated.append("shipments")
    return report


def run_crash_load(
    workdir: Path,
    db_url: str,
    count: int,
    senders: int,
    kill_interval: tuple[float, float] = (0.5, 2.0),
    seed: int = 1,
    time_limit: float = 600.0,
    pace: float = 0.0,
    min_kills: int = 0,
) -> CrashReport:
    """Run the crash-safety load and return its figures."""
    started = time.monotonic()
    rng = random.Random(seed)
    port = free_port()
    with smtp_sink() as (sink, sink_port):
        environment = cli_environment(
            workdir / "data",
            db_url=db_url,
            intake_port=str(port),
            intake_domain="bcc.test",
            outbound=f"smtp://127.0.0.1:{sink_port}",
            lease_seconds="3",
            retry_delay="0.5",
            poll_interval="0.2",
            log_level="WARNING",
        )
        address = run_cli(
            environment,
            "shop",
            "add",
            "crash",
            "--name",
            "Crash Shop",
            "--sender-domain",
            SHOP_DOMAIN,
        ).stdout.splitlines()[0]

        service = _Service(environment, port, workdir / "serve.log")
        service.start()
        acknowledged: dict[int, str] = {}
        stop = threading.Event()
        report = CrashReport(sent=count)
        killer = threading.Thread(
            target=_killer,
            args=(service, stop, report, kill_interval, rng, min_kills),
        )
        killer.start()
        try:
            _send_all(
                port,
                address,
                count,
                senders,
                report,
                acknowledged,
                started + time_limit,
                pace,
            )
        finally:
            stop.set()
            killer.join()

        # The last instance runs undisturbed until every message and every
        # update has reached a final state.
        engine = open_store(db_url)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not _settled(
                engine, len(acknowledged)
            ):
                time.sleep(0.2)
            time.sleep(0.5)
            service.stop()
            checked = _check(engine, count, acknowledged, sink)
        finally:
            service.stop()
            engine.dispose()

    checked.sent = count
    checked.acknowledged = len(acknowledged)
    checked.attempts = report.attempts
    checked.refused = report.refused
    checked.kills = report.kills
    checked.errors = report.errors
    checked.seconds = time.monotonic() - started
    return checked

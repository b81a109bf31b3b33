"""Peak memory of ``bcctrack serve`` for a message at the size limit.

Starts the service on loopback with the default 50 MiB limit, sends one
message just under the limit (accepted, then processed) and one just over
it (rejected with 552), and prints the peak resident memory (VmHWM from
/proc, Linux only) of the service process and of its processing child.

    python bench/memory.py [--size-mib 50]
"""

from __future__ import annotations

import argparse
import base64
import os
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support import (  # noqa: E402
    bcctrack_executable,
    cli_environment,
    free_port,
    run_cli,
    wait_for_port,
)

MIB = 1024 * 1024


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in map(int, children):
            found.append(child)
            found.extend(_descendants(child))
    return found


def _message(size: int) -> bytes:
    head = (
        b"From: Shop <orders@memory-shop.example>\r\nTo: Chris <chris@example.com>\r\n"
        b"Subject: Your order 4711 has shipped\r\n"
        b"Message-ID: <%d@memory-shop.example>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\nTracking number: 1Z999AA10123456784\r\n"
        b"--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\n" % size
    )
    tail = b"\r\n--b--\r\n"
    payload_size = (size - len(head) - len(tail)) * 3 // 4
    encoded = base64.encodebytes(os.urandom(payload_size)).replace(b"\n", b"\r\n")
    raw = head + encoded + tail
    return raw[: size - len(tail)] + tail if len(raw) > size else raw


def _start(environment: dict[str, str], role: str, port: int, log_path: Path) -> Any:
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [bcctrack_executable(), "serve", "--role", role],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    if role == "intake":
        wait_for_port(port, process, log_path)
    time.sleep(2)
    return process


def _send(port: int, address: str, raw: bytes, declare_size: bool) -> str:
    """Send ``raw``; return the reply to MAIL FROM (if refused) or to DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=300) as client:
        client.ehlo()
        options = [f"SIZE={len(raw)}"] if declare_size else []
        code, reply = client.mail("bounce@memory-shop.example", options)
        if code != 250:
            return f"{code} {reply.decode()} (at MAIL FROM)"
        client.rcpt(address)
        code, reply = client.data(raw)
        return f"{code} {reply.decode()}"


def _wait_processed(environment: dict[str, str]) -> str:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        states = run_cli(environment, "messages", "--json").stdout
        if '"state": "queued"' not in states:
            return states
        time.sleep(1)
    return states


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=50)
    arguments = parser.parse_args()
    limit = arguments.size_mib * MIB

    with tempfile.TemporaryDirectory(prefix="bcctrack-memory-") as folder:
        port = free_port()
        environment = cli_environment(
            Path(folder), intake_port=str(port), max_message_size=str(limit)
        )
        address = run_cli(
            environment,
            "shop",
            "add",
            "memory",
            "--name",
            "Memory Shop",
            "--sender-domain",
            "memory-shop.example",
        ).stdout.splitlines()[0]
        log_path = Path(folder) / "serve.log"
        under = _message(limit - 1024)
        over = _message(limit + 1024)
        print(f"message size limit:    {limit / MIB:.0f} MiB")

        # Intake alone, then the worker alone, so each peak is its own.
        intake = _start(environment, "intake", port, log_path)
        try:
            before = _status_kib(intake.pid, "VmRSS")
            started = time.perf_counter()
            accepted = _send(port, address, under, declare_size=False)
            seconds = time.perf_counter() - started
            declared = _send(port, address, over, declare_size=True)
            undeclared = _send(port, address, over, declare_size=False)
            peak = _status_kib(intake.pid, "VmHWM")
        finally:
            intake.terminate()
            intake.wait(timeout=30)
        print(
            f"at the limit:          {len(under) / MIB:.2f} MiB, {accepted[:40]} "
            f"in {seconds:.1f} s"
        )
        print(f"over, SIZE declared:   {declared[:70]}")
        print(f"over, SIZE undeclared: {undeclared[:70]}")
        print(f"intake RSS before:     {before / 1024:.0f} MiB")
        print(
            f"intake peak RSS:       {peak / 1024:.0f} MiB "
            f"(+{(peak - before) * 1024 / limit:.1f} x the limit)"
        )

        worker = _start(environment, "worker", 0, log_path)
        try:
            before = _status_kib(worker.pid, "VmRSS")
            states = _wait_processed(environment)
            peak = _status_kib(worker.pid, "VmHWM")
            children = [_status_kib(pid, "VmHWM") for pid in _descendants(worker.pid)]
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        state = states.split('"state": "')[1].split('"')[0] if states else "?"
        print(f"processed:             {state}")
        print(f"worker RSS before:     {before / 1024:.0f} MiB")
        print(
            f"worker peak RSS:       {peak / 1024:.0f} MiB "
            f"(+{(peak - before) * 1024 / limit:.1f} x the limit)"
        )
        print(f"largest child peak:    {max(children, default=0) / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

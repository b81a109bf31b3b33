"""The whole BCC path through the real ``bcctrack`` command and real SMTP.

``bcctrack serve`` runs as a subprocess on a free loopback port, with a real
aiosmtpd sink as its outbound relay. Corpus shipping emails go in over SMTP
with CRLF line endings, and customer updates must come out at the sink.
"""

from __future__ import annotations

import json
import smtplib
from email.utils import parseaddr
from pathlib import Path

import pytest

from support import (
    cli_environment,
    crlf,
    free_port,
    run_cli,
    serving,
    smtp_sink,
    wait_until,
)


def _sender_domain(raw: bytes) -> str:
    for line in raw.decode("utf-8", "replace").splitlines():
        if line.lower().startswith("from:"):
            return parseaddr(line[5:])[1].rpartition("@")[2].lower()
    raise AssertionError("no From: header")


def _shop_shipping_rows(labels: list[dict[str, str]]) -> list[dict[str, str]]:
    return [
        row
        for row in labels
        if row["kind"] == "shipping_confirmation"
        and row["sender_role"] == "shop"
        and row["tracking_numbers"]
        and row["customer_email"]
    ]


def _orders(environment: dict[str, str]) -> list[dict[str, object]]:
    output = run_cli(environment, "orders", "--json").stdout
    return [json.loads(line) for line in output.splitlines()]


def test_shipping_emails_become_customer_updates(
    tmp_path: Path, corpus_dir: Path, corpus_labels: list[dict[str, str]]
) -> None:
    rows = _shop_shipping_rows(corpus_labels)
    assert len(rows) >= 10
    port = free_port()
    with smtp_sink() as (sink, sink_port):
        environment = cli_environment(
            tmp_path / "data",
            intake_port=str(port),
            intake_domain="bcc.test",
            outbound=f"smtp://127.0.0.1:{sink_port}",
        )
        addresses = {}
        for index, row in enumerate(rows):
            raw = (corpus_dir / row["path"]).read_bytes()
            result = run_cli(
                environment,
                "shop",
                "add",
                f"shop{index}",
                "--name",
                f"Shop {index}",
                "--sender-domain",
                _sender_domain(raw),
                "--language",
                row["language"],
            )
            addresses[row["path"]] = result.stdout.splitlines()[0]
            assert addresses[row["path"]].endswith("@bcc.test")

        with serving(environment, port=port, log_path=tmp_path / "serve.log"):
            for row in rows:
                raw = crlf((corpus_dir / row["path"]).read_bytes())
                with smtplib.SMTP("127.0.0.1", port) as client:
                    refused = client.sendmail(
                        "bounce@" + _sender_domain(raw), [addresses[row["path"]]], raw
                    )
                assert refused == {}
            received = sink.wait_for(len(rows), timeout=60)

        log = (tmp_path / "serve.log").read_text()
        assert len(received) == len(rows), log
        orders = {order["order_number"]: order for order in _orders(environment)}

    by_recipient = {message.rcpt_tos[0]: message for message in received}
    for row in rows:
        order = orders[row["order_number"]]
        assert order["customer"]["email"] == row["customer_email"]  # type: ignore[index]
        shipments = order["shipments"]
        assert [s["tracking_number"] for s in shipments] == [row["tracking_numbers"]]  # type: ignore[attr-defined]
        assert shipments[0]["carrier"] == row["carrier"]  # type: ignore[index]
        notifications = order["notifications"]
        assert [(n["update"], n["state"]) for n in notifications] == [
            ("shipped", "sent")
        ]  # type: ignore[attr-defined]

        email = by_recipient[row["customer_email"]].message
        assert row["order_number"] in email["Subject"]
        text = email.get_body(("plain",)).get_content()
        assert row["tracking_numbers"] in text
        link = shipments[0]["tracking_url"]  # type: ignore[index]
        assert link
        assert link.startswith("https://")
        assert link in text


def test_intake_role_message_processed_after_restart(
    tmp_path: Path, corpus_dir: Path, corpus_labels: list[dict[str, str]]
) -> None:
    row = _shop_shipping_rows(corpus_labels)[0]
    raw = crlf((corpus_dir / row["path"]).read_bytes())
    port = free_port()
    environment = cli_environment(tmp_path / "data", intake_port=str(port))
    address = run_cli(
        environment,
        "shop",
        "add",
        "shop",
        "--name",
        "Shop",
        "--sender-domain",
        _sender_domain(raw),
    ).stdout.splitlines()[0]
    log_path = tmp_path / "serve.log"

    with serving(environment, "--role", "intake", port=port, log_path=log_path):
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.sendmail("bounce@" + _sender_domain(raw), [address], raw)
        queued = json.loads(run_cli(environment, "messages", "--json").stdout)
        assert queued["state"] == "queued"

    with serving(environment, "--role", "all", port=port, log_path=log_path):
        processed = wait_until(
            lambda: (
                json.loads(run_cli(environment, "messages", "--json").stdout)["state"]
                == "processed"
            )
        )
        assert processed, log_path.read_text()
        outbox = tmp_path / "data" / "outbox"
        files = wait_until(lambda: list(outbox.glob("*.eml")))
    assert len(files) == 1
    assert row["tracking_numbers"].encode() in files[0].read_bytes()


def test_serve_reports_busy_port(tmp_path: Path) -> None:
    port = free_port()
    environment = cli_environment(tmp_path / "data", intake_port=str(port))
    with serving(environment, port=port, log_path=tmp_path / "first.log"):
        second = run_cli(environment, "serve", check=False)
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in second.stderr


@pytest.mark.parametrize("role", ["intake", "worker"])
def test_serve_roles_start_and_stop(tmp_path: Path, role: str) -> None:
    port = free_port()
    environment = cli_environment(tmp_path / "data", intake_port=str(port))
    log_path = tmp_path / "serve.log"
    listen = port if role == "intake" else 0
    with serving(
        environment, "--role", role, port=listen, log_path=log_path
    ) as process:
        wait_until(
            lambda: (
                "running" in log_path.read_text() or "listening" in log_path.read_text()
            )
        )
    assert process.returncode == 0, log_path.read_text()

"""The poller's commands as an operator runs them, in a subprocess."""

from __future__ import annotations

import json
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest

from carriers import carrier_payloads as payloads
from carriers.fake_carrier import FakeCarrierServer, Reply
from support import cli_environment, run_cli

NUMBER = "00340434161094042557"


@pytest.fixture
def dhl_server() -> Iterator[FakeCarrierServer]:
    server = FakeCarrierServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def environment(tmp_path: Path, dhl_server: FakeCarrierServer) -> dict[str, str]:
    env = cli_environment(
        tmp_path / "data",
        intake_domain="bcc.test",
        dhl_base_url=dhl_server.url,
        dhl_api_key="key",
    )
    run_cli(
        env,
        "shop",
        "add",
        "acme",
        "--name",
        "Acme",
        "--sender-domain",
        "acme.example",
        "--language",
        "de",
    )
    return env


def test_preview_renders_every_update(
    environment: dict[str, str], tmp_path: Path
) -> None:
    for update in (
        "shipped",
        "out_for_delivery",
        "available_for_pickup",
        "delivered",
        "delayed",
        "returned",
    ):
        output = tmp_path / f"{update}.eml"
        run_cli(
            environment, "preview", update, "--shop", "acme", "--output", str(output)
        )
        email = message_from_bytes(output.read_bytes(), policy=default)
        assert email["Content-Language"] == "de"
        assert "10045" in str(email["Subject"])
        assert "optout." in str(email["List-Unsubscribe"])
        assert email.get_body(("html",)) is not None
    text = run_cli(
        environment,
        "preview",
        "available_for_pickup",
        "--shop",
        "acme",
        "--language",
        "it",
        "--format",
        "text",
    ).stdout
    assert "Punto di ritiro: Packstation 123" in text
    missing = run_cli(
        environment,
        "preview",
        "delivered",
        "--shop",
        "acme",
        "--language",
        "xx",
        check=False,
    )
    assert missing.returncode != 0
    assert "no words for language 'xx'" in missing.stderr


def test_track_unknown_number_looks_up_without_storing(
    environment: dict[str, str], dhl_server: FakeCarrierServer
) -> None:
    dhl_server.reply(
        "GET", "/track/shipments", Reply(json=payloads.dhl_shipments(NUMBER))
    )
    result = run_cli(environment, "track", NUMBER, "--carrier", "dhl_paket", "--json")
    report = json.loads(result.stdout)
    assert report["shipment_id"] is None
    assert report["status"] == "out_for_delivery"
    assert [event["raw_code"] for event in report["events"]] == [
        "pre-transit",
        "transit",
        "transit",
    ]
    orders = run_cli(environment, "orders", "--json").stdout
    assert orders == ""


def test_track_without_adapter_says_why(environment: dict[str, str]) -> None:
    result = run_cli(environment, "track", "ABC123", "--carrier", "gls", check=False)
    assert result.returncode == 1
    assert "no carrier adapter with credentials for gls" in result.stderr


def test_optout_commands(environment: dict[str, str]) -> None:
    run_cli(environment, "optout", "add", "Chris@Example.com", "--shop", "acme")
    listed = json.loads(run_cli(environment, "optout", "list", "--json").stdout)
    assert listed["address"] == "chris@example.com"
    assert listed["source"] == "admin"
    run_cli(environment, "optout", "remove", "chris@example.com", "--shop", "acme")
    assert run_cli(environment, "optout", "list").stdout == ""
    again = run_cli(
        environment,
        "optout",
        "remove",
        "chris@example.com",
        "--shop",
        "acme",
        check=False,
    )
    assert again.returncode == 1


def test_shop_credentials_commands(environment: dict[str, str]) -> None:
    run_cli(
        environment,
        "shop",
        "credentials",
        "set",
        "acme",
        "ups",
        "--client-id",
        "shop-id",
        "--client-secret",
        "s3cr3t-value-123456",
    )
    listed = json.loads(
        run_cli(environment, "shop", "credentials", "list", "acme", "--json").stdout
    )
    assert listed == {
        "adapter": "ups",
        "client_id": "shop-id",
        "api_key": "",
        "client_secret": "...3456",
    }
    missing = run_cli(
        environment, "shop", "credentials", "set", "acme", "dhl", check=False
    )
    assert "missing --api-key" in missing.stderr
    run_cli(environment, "shop", "credentials", "remove", "acme", "ups")
    assert run_cli(environment, "shop", "credentials", "list", "acme").stdout == ""


def test_import_events_reports_bad_lines(
    environment: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "tracking_number,status,occurred_at\n"
        "NOPE1,delivered,2026-09-20T10:00:00+02:00\n"
        "NOPE2,flying,2026-09-20T10:00:00+02:00\n"
    )
    result = run_cli(environment, "import-events", str(path), check=False)
    assert result.returncode == 1
    assert "line 3: unknown status 'flying'" in result.stderr
    assert "2 rows, 0 applied, 1 without a shipment, 1 skipped" in result.stdout

"""The poller's commands as an operator runs them, in a subprocess."""

from __future__ import annotations

import json
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest

from carriers import carrier_payloads as payloads
from carriers.fake_carrier import FakeCarrierServer, Reply
from extractors.carriers import tracking_url
from mailhandler.settings import Settings
from mailhandler.shops import get_shop
from mailhandler.store import open_store, transaction
from mailhandler.store.models import (
    Notification,
    NotificationState,
    Shipment,
    utcnow,
)
from support import add_shipment, cli_environment, run_cli

NUMBER = "00340434161094042557"


@pytest.fixture
def environment(tmp_path: Path, carrier_server: FakeCarrierServer) -> dict[str, str]:
    env = cli_environment(
        tmp_path / "data",
        intake_domain="bcc.test",
        dhl_base_url=carrier_server.url,
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
    environment: dict[str, str], carrier_server: FakeCarrierServer
) -> None:
    carrier_server.reply(
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
        "tracking_number,carrier,status,occurred_at\n"
        "NOPE1,,delivered,2026-09-20T10:00:00+02:00\n"
        "NOPE2,,flying,2026-09-20T10:00:00+02:00\n"
        "NOPE3,nonsense,delivered,2026-09-20T10:00:00+02:00\n"
        "NOPE4,dhl_paket,delivered,20.09.2026 10:00\n"
        "NOPE5,DHL_Paket,delivered,2026-09-20T10:00:00\n"
    )
    result = run_cli(environment, "import-events", str(path), check=False)
    assert result.returncode == 1
    errors = result.stderr.splitlines()
    assert (
        f"{path}: unknown status 'flying' for carrier (none) on line 3: use a "
        "canonical status or a code of ups, usps, fedex, dhl_* or 17TRACK"
    ) in errors
    unknown = f"{path}: unknown carrier 'nonsense' on line 4: use one of "
    assert any(line.startswith(unknown) for line in errors)
    assert "dhl_paket" in next(line for line in errors if line.startswith(unknown))
    assert (
        f"{path}: invalid time '20.09.2026 10:00' on line 5: use ISO 8601 with "
        "an offset, e.g. 2026-12-04T10:15:00+01:00"
    ) in errors
    assert (
        f"{path}: time '2026-09-20T10:00:00' without a UTC offset on line 6: "
        "add one, e.g. 2026-12-04T10:15:00+01:00"
    ) in errors
    assert "5 rows, 0 applied, 1 without a shipment, 4 skipped" in result.stdout


def _add_stored_shipment(tmp_path: Path, number: str = NUMBER) -> int:
    engine = open_store(Settings(data_dir=tmp_path / "data").database_url)
    try:
        shop = get_shop(engine, "acme")
        assert shop.id is not None
        return add_shipment(engine, shop.id, number, "dhl_paket")
    finally:
        engine.dispose()


def test_track_paused_key_says_how_to_resume(
    environment: dict[str, str], carrier_server: FakeCarrierServer, tmp_path: Path
) -> None:
    _add_stored_shipment(tmp_path)
    carrier_server.reply(
        "GET",
        "/track/shipments",
        Reply(status=401, json={"title": "Unauthorized"}),
        Reply(json=payloads.dhl_shipments(NUMBER)),
    )

    rejected = run_cli(environment, "track", NUMBER, check=False)

    assert rejected.returncode == 1
    lines = rejected.stdout.splitlines()
    assert lines[1].startswith(
        "  not polled now: waiting for dhl credential 'default' until "
    )
    assert "paused after a rejection: dhl: GET" in lines[1]
    assert (
        lines[2] == "  fix the key, then 'bcctrack carriers resume dhl' ends the pause"
    )
    status = run_cli(environment, "status").stdout
    assert "carrier credentials: 1" in status
    assert "  dhl default: paused until " in status
    assert "1 of 250 calls today; 1 shipment(s) waiting" in status
    assert (
        "    fix the key, then 'bcctrack carriers resume dhl' ends the pause" in status
    )

    resumed = run_cli(environment, "carriers", "resume", "dhl")

    assert resumed.stdout == (
        "dhl credential 'default' resumed: its pause ended; "
        "1 waiting shipment(s) due now\n"
    )
    (account,) = json.loads(run_cli(environment, "status", "--json").stdout)[
        "carrier_accounts"
    ]
    assert account["paused_until"] is None
    assert account["waiting_shipments"] == 0
    polled = run_cli(environment, "track", NUMBER, "--json")
    assert json.loads(polled.stdout)["status"] == "out_for_delivery"
    assert json.loads(polled.stdout)["not_polled"] is None


def test_carriers_resume_unknown_shop_fails(environment: dict[str, str]) -> None:
    result = run_cli(
        environment, "carriers", "resume", "dhl", "--shop", "nope", check=False
    )
    assert result.returncode == 1
    assert "shop 'nope' not found" in result.stderr
    listed = run_cli(environment, "carriers", "list").stdout
    assert listed == ""


def test_track_rejects_empty_number(
    environment: dict[str, str], carrier_server: FakeCarrierServer
) -> None:
    for number in ("", "  "):
        result = run_cli(environment, "track", number, check=False)
        assert result.returncode == 2
        assert "the tracking number is empty" in result.stderr
    assert carrier_server.requests == []


def test_track_rejects_unknown_carrier(
    environment: dict[str, str], carrier_server: FakeCarrierServer
) -> None:
    result = run_cli(
        environment, "track", "ABC123", "--carrier", "nonsense", check=False
    )
    assert result.returncode == 2
    assert "unknown carrier 'nonsense': use one of " in result.stderr
    assert "dhl_paket" in result.stderr
    assert carrier_server.requests == []


def test_orders_text_shows_update_reason(
    environment: dict[str, str], tmp_path: Path
) -> None:
    shipment_id = _add_stored_shipment(tmp_path)
    engine = open_store(Settings(data_dir=tmp_path / "data").database_url)
    try:
        with transaction(engine) as session:
            shipment = session.get(Shipment, shipment_id)
            assert shipment is not None
            session.add(
                Notification(
                    shop_id=shipment.shop_id,
                    order_id=shipment.order_id,
                    shipment_id=shipment_id,
                    update="shipped",
                    recipient="customer@example.com",
                    state=NotificationState.SUPPRESSED,
                    event_at=utcnow(),
                    reason="recipient opted out",
                )
            )
    finally:
        engine.dispose()

    lines = run_cli(environment, "orders").stdout.splitlines()

    (update,) = [line for line in lines if line.startswith("  update shipped")]
    assert update.startswith("  update shipped  suppressed  ")
    assert update.endswith("  (recipient opted out)")


def test_preview_without_link(environment: dict[str, str]) -> None:
    arguments = ["preview", "shipped", "--shop", "acme", "--language", "en"]
    with_link = run_cli(environment, *arguments, "--format", "text").stdout
    without = run_cli(
        environment, *arguments, "--format", "text", "--without-link"
    ).stdout
    assert "the link below" in with_link
    assert "the link below" not in without
    assert "https://" not in without.split("--")[0]
    assert "tracking number below" in without


def test_preview_link_matches_real_updates(environment: dict[str, str]) -> None:
    arguments = ["preview", "shipped", "--shop", "acme", "--format", "html"]
    html = run_cli(environment, *arguments).stdout
    link = tracking_url("dhl_paket", NUMBER)
    assert link is not None
    assert link in html
    assert "dhl-sendungsverfolgung" not in html


def test_preview_output_missing_folder(
    environment: dict[str, str], tmp_path: Path
) -> None:
    output = tmp_path / "nonexistent" / "x.eml"
    arguments = ["preview", "delivered", "--shop", "acme", "--output", str(output)]
    result = run_cli(environment, *arguments, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"Error: cannot write {output}: No such file or directory; give an "
        "--output path in an existing, writable folder"
    )

"""The bcctrack command as a user runs it, in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from support import cli_environment, run_cli

EXTRACT_KEYS = {
    "file",
    "kind",
    "order_number",
    "shipments",
    "customer",
    "language",
    "error",
}


def test_shop_add_prints_address_first(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path, intake_domain="bcc.example")
    result = run_cli(
        environment,
        "shop",
        "add",
        "acme",
        "--name",
        "Acme Shop",
        "--sender-domain",
        "acme.example",
        "--sender-domain",
        "mail.acme.example",
        "--language",
        "de",
    )
    address = result.stdout.splitlines()[0]
    assert address.startswith("acme-")
    assert address.endswith("@bcc.example")
    listed = json.loads(run_cli(environment, "shop", "list", "--json").stdout)
    assert listed["slug"] == "acme"
    assert listed["name"] == "Acme Shop"
    assert listed["address"] == address
    assert listed["sender_domains"] == ["acme.example", "mail.acme.example"]
    assert listed["language"] == "de"
    assert listed["sender_policy"] == "domain"


def test_shop_add_rejects_bad_input_with_reason(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path)
    result = run_cli(
        environment,
        "shop",
        "add",
        "Bad Slug",
        "--name",
        "X",
        "--sender-domain",
        "x.example",
        check=False,
    )
    assert result.returncode == 1
    assert "invalid slug 'Bad Slug'" in result.stderr
    result = run_cli(environment, "shop", "add", "ok", "--name", "X", check=False)
    assert result.returncode == 2
    assert "--sender-domain" in result.stderr


def test_extract_json_keeps_going_after_a_bad_file(tmp_path: Path) -> None:
    email = tmp_path / "order.eml"
    email.write_bytes(
        b"From: Shop <orders@shop.example>\nTo: Chris <chris@example.com>\n"
        b"Subject: Hello\n\nHi\n"
    )
    missing = tmp_path / "missing.eml"
    result = run_cli(
        cli_environment(tmp_path),
        "extract",
        "--json",
        str(email),
        str(missing),
        str(email),
        check=False,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1
    assert [line["file"] for line in lines] == [str(email), str(missing), str(email)]
    for line in lines:
        assert set(line) == EXTRACT_KEYS
    assert lines[0]["error"] is None
    assert lines[0]["customer"] == {"email": "chris@example.com", "name": "Chris"}
    assert lines[1]["error"] is not None
    assert "missing.eml" in lines[1]["error"]
    assert lines[1]["shipments"] == []


def test_extract_exit_zero_when_all_processed(tmp_path: Path) -> None:
    email = tmp_path / "a.eml"
    email.write_bytes(b"Subject: x\n\nbody\n")
    result = run_cli(cli_environment(tmp_path), "extract", "--json", str(email))
    assert result.returncode == 0


def test_orders_and_messages_empty_store(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path)
    assert run_cli(environment, "orders", "--json").stdout == ""
    assert run_cli(environment, "messages", "--json").stdout == ""


def test_invalid_setting_reported(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path, outbound="ftp://nowhere")
    result = run_cli(environment, "shop", "list", check=False)
    assert result.returncode == 1
    assert "invalid setting BCCTRACK_OUTBOUND='ftp://nowhere'" in result.stderr

"""``bcctrack extract`` and ``bcctrack eval``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailhandler.cli import main

EMAIL = (
    b"From: Shop <orders@shop.example>\nTo: Anna <anna@customer.example>\n"
    b"Subject: Your order 4711 has shipped\nContent-Type: text/html\n\n"
    b"<p>Order number: 4711</p><p>Tracking number: 1Z999AA10123456784</p>\n"
)
KEYS = {"file", "kind", "order_number", "shipments", "customer", "language", "error"}


def test_extract_json_lines(tmp_path: Path) -> None:
    email = tmp_path / "a.eml"
    email.write_bytes(EMAIL)
    missing = tmp_path / "missing.eml"
    result = CliRunner().invoke(main, ["extract", "--json", str(email), str(missing)])
    assert result.exit_code == 1
    first, second = (json.loads(line) for line in result.output.splitlines())
    assert set(first) == KEYS
    assert first["file"] == str(email)
    assert first["order_number"] == "4711"
    assert first["shipments"] == [
        {
            "tracking_number": "1Z999AA10123456784",
            "carrier": "ups",
            "tracking_url": "https://www.ups.com/track?tracknum=1Z999AA10123456784",
        }
    ]
    assert first["error"] is None
    assert second["error"]
    assert second["shipments"] == []


def test_extract_explain(tmp_path: Path) -> None:
    email = tmp_path / "a.eml"
    email.write_bytes(EMAIL)
    result = CliRunner().invoke(main, ["extract", "--explain", str(email)])
    assert result.exit_code == 0
    assert "candidates:" in result.output
    assert "verdict: accepted" in result.output
    assert "labels @ html[0]" in result.output


def test_eval_reports(tmp_path: Path) -> None:
    (tmp_path / "a.eml").write_bytes(EMAIL)
    (tmp_path / "labels.tsv").write_text(
        "path\tkind\torder_number\ttracking_numbers\tcarrier\tcustomer_email\t"
        "language\tnotes\n"
        "a.eml\tshipping_confirmation\t4712\t1Z999AA10123456784\tups\t"
        "anna@customer.example\ten\t\n"
    )
    result = CliRunner().invoke(main, ["eval", str(tmp_path), "--json"])
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert report["files"] == 1
    assert report["fields"]["tracking_numbers"]["recall"] == 1.0
    assert report["fields"]["order_number"]["precision"] == 0.0
    assert {"file": "a.eml", "field": "order_number", "expected": "4712",
            "extracted": "4711"} in report["mistakes"]  # fmt: skip
    text = CliRunner().invoke(main, ["eval", str(tmp_path)])
    assert text.exit_code == 0
    assert "false order_number" in text.output
    assert "emails/s" in text.output


LABEL_COLUMNS = (
    "path\tkind\torder_number\ttracking_numbers\tcarrier\tcustomer_email\t"
    "language\tnotes\n"
)


def test_eval_missing_labels_is_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["eval", str(tmp_path)])
    assert result.exit_code == 2
    assert "labels table not found" in result.output


def test_eval_missing_folder_is_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "missing")])
    assert result.exit_code == 2


def test_eval_no_rows_reports_no_scores(tmp_path: Path) -> None:
    (tmp_path / "labels.tsv").write_text(LABEL_COLUMNS)
    text = CliRunner().invoke(main, ["eval", str(tmp_path)])
    assert text.exit_code == 0
    assert "no files scored" in text.output
    assert "1.000" not in text.output
    assert "n/a" in text.output
    report = json.loads(
        CliRunner().invoke(main, ["eval", str(tmp_path), "--json"]).output
    )
    assert report["files"] == 0
    assert report["fields"]["tracking_numbers"]["precision"] is None
    assert report["fields"]["tracking_numbers"]["recall"] is None


CALENDAR_EMAIL = (
    b"From: Shop <orders@shop.example>\nTo: anna@customer.example\n"
    b"Subject: Your order 4711 has shipped\nMIME-Version: 1.0\n"
    b'Content-Type: multipart/mixed; boundary="b"\n\n--b\n'
    b"Content-Type: text/plain\n\nTracking number: 1Z999AA10123456784\n--b\n"
    b"Content-Type: text/calendar\nContent-Disposition: inline\n\n"
    b"BEGIN:VCALENDAR\nEND:VCALENDAR\n--b--\n"
)


def test_eval_keeps_parser_warnings_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(logging.getLogger("mailparser"), "level", logging.NOTSET)
    caplog.set_level(logging.WARNING)
    (tmp_path / "a.eml").write_bytes(CALENDAR_EMAIL)
    (tmp_path / "labels.tsv").write_text(
        LABEL_COLUMNS + "a.eml\tshipping_confirmation\t4711\t1Z999AA10123456784\t"
        "ups\tanna@customer.example\ten\t\n"
    )
    result = CliRunner().invoke(main, ["eval", str(tmp_path)])
    assert result.exit_code == 0
    assert "not handled" not in result.output
    assert not [r for r in caplog.records if r.name.startswith("mailparser")]

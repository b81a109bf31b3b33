"""Shop rules in the service: reload, last good rules, replay and activation."""

from __future__ import annotations

import json
import logging
import os
import smtplib
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailhandler.inbound import Envelope, store_inbound
from mailhandler.pipeline import Pipeline
from mailhandler.rules import RuleBook
from mailhandler.settings import Settings
from mailhandler.shops import add_shop
from mailhandler.store.models import InboundState, Shipment
from support import cli_environment, free_port, run_cli, serving

EMAIL = (
    "From: Moebel Krause <versand@moebel-krause.example>\r\n"
    "To: Petra Schmidt <petra.schmidt@example.de>\r\n"
    "Subject: Ihre Lieferung - Vorgang 2024/MK/{n:04d}\r\n"
    "Message-ID: <lieferung-{n}@moebel-krause.example>\r\n"
    "Content-Type: text/html; charset=utf-8\r\n\r\n"
    "<html><body><table>"
    '<tr><td>Vorgang</td><td class="vorgang">2024/MK/{n:04d}</td></tr>'
    '<tr><td>Frachtbrief</td><td class="fb">HLM-7741-2290-{n:04d}</td></tr>'
    "</table></body></html>\r\n"
)
RULES = """\
[order_number]
selector = "td.vorgang"

[tracking_number]
label = "Frachtbrief"
regex = '(?P<value>HLM-\\d{4}-\\d{4}-\\d{4})'
"""
BROKEN_RULES = "[order_number]\nregex = '(unclosed'\n"


def _email(number: int) -> bytes:
    return EMAIL.format(n=number).encode()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    # A rewrite within one clock tick must still count as a change.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_rulebook_reloads_and_keeps_last_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    book = RuleBook(tmp_path, timeout=0.2)
    assert book.get("krause") is None
    _write(book.active_path("krause"), RULES)
    first = book.get("krause")
    assert first is not None
    assert len(first.fields) == 2

    with caplog.at_level(logging.ERROR, logger="bcctrack.extract"):
        _write(book.active_path("krause"), BROKEN_RULES)
        assert book.get("krause") is first
        assert book.get("krause") is first
    rejections = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejections) == 1
    assert "line 2" in rejections[0].getMessage()
    assert "keeping the previous rules" in rejections[0].getMessage()
    assert book.rejection("krause") is not None

    _write(book.active_path("krause"), RULES.replace("td.vorgang", "td.other"))
    second = book.get("krause")
    assert second is not None
    assert second is not first
    assert book.rejection("krause") is None


def test_pipeline_applies_active_rules_without_restart(
    engine: Engine, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, retry_delay=0.001)
    shop = add_shop(engine, "krause", "Moebel Krause", ["moebel-krause.example"])
    assert shop.id is not None
    pipeline = Pipeline(engine, settings)
    try:
        outcomes = []
        for number in (1, 2):
            if number == 2:
                _write(settings.rules_folder / "krause.toml", RULES)
            stored = store_inbound(
                engine,
                [shop.id],
                _email(number),
                Envelope("b@moebel-krause.example", []),
            )
            assert pipeline.claim(stored[0].id)
            outcomes.append(pipeline.process(stored[0].id))
    finally:
        pipeline.close()
    assert [o.state for o in outcomes if o] == [
        InboundState.IGNORED,
        InboundState.PROCESSED,
    ]
    with Session(engine) as session:
        shipments = list(session.scalars(select(Shipment)))
    assert [s.tracking_number for s in shipments] == ["HLM774122900002"]


def test_admin_walkthrough_test_replay_activate(tmp_path: Path) -> None:
    port = free_port()
    environment = cli_environment(tmp_path / "data", intake_port=str(port))
    address = run_cli(
        environment,
        "shop",
        "add",
        "krause",
        "--name",
        "Moebel Krause",
        "--sender-domain",
        "moebel-krause.example",
        "--language",
        "de",
    ).stdout.splitlines()[0]
    log_path = tmp_path / "serve.log"
    with serving(environment, port=port, log_path=log_path):
        with smtplib.SMTP("127.0.0.1", port) as client:
            for number in (1, 2, 3):
                client.sendmail("b@moebel-krause.example", [address], _email(number))
        messages = [
            json.loads(line)
            for line in run_cli(environment, "messages", "--json").stdout.splitlines()
        ]
        assert {m["state"] for m in messages} <= {"queued", "ignored"}

    draft = tmp_path / "data" / "rules" / "krause.draft.toml"
    _write(draft, RULES)
    email_file = tmp_path / "mail.eml"
    email_file.write_bytes(_email(9))

    tested = run_cli(environment, "rules", "test", "krause", str(email_file)).stdout
    assert "2024/MK/0009" in tested
    assert "HLM774122900009" in tested
    assert "rule [order_number] in krause.draft.toml, line 1" in tested
    stored_test = run_cli(
        environment, "rules", "test", "krause", "--message", str(messages[-1]["id"])
    ).stdout
    assert "HLM774122900001" in stored_test

    replayed = run_cli(environment, "rules", "replay", "krause", "--json")
    changes = [json.loads(line) for line in replayed.stdout.splitlines()]
    new_orders = sorted(c["after"] for c in changes if c["field"] == "order_number")
    assert new_orders == ["2024/MK/0001", "2024/MK/0002", "2024/MK/0003"]
    # The rules add the order and the tracking number; with a tracking
    # number, the shop's email becomes a shipping confirmation.
    assert {c["change"] for c in changes if c["field"] != "kind"} == {"new"}
    kinds = {(c["before"], c["after"]) for c in changes if c["field"] == "kind"}
    assert kinds == {("other", "shipping_confirmation")}
    assert "3 messages replayed" in replayed.stderr
    assert not (tmp_path / "data" / "rules" / "krause.toml").exists()

    activated = run_cli(environment, "rules", "activate", "krause")
    assert "Activated" in activated.stdout
    assert (tmp_path / "data" / "rules" / "krause.toml").read_text() == RULES
    reprocessed = run_cli(
        environment, "reprocess", "--shop", "krause", *[str(m["id"]) for m in messages]
    ).stdout
    assert reprocessed.count("processed") == 3
    orders = [
        json.loads(line)
        for line in run_cli(environment, "orders", "--json").stdout.splitlines()
    ]
    assert sorted(o["order_number"] for o in orders) == [
        "2024/MK/0001",
        "2024/MK/0002",
        "2024/MK/0003",
    ]


def test_activate_rejects_broken_draft(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path / "data")
    run_cli(
        environment,
        "shop",
        "add",
        "krause",
        "--name",
        "K",
        "--sender-domain",
        "moebel-krause.example",
    )
    _write(tmp_path / "data" / "rules" / "krause.draft.toml", BROKEN_RULES)
    result = run_cli(environment, "rules", "activate", "krause", check=False)
    assert result.returncode == 1
    assert "line 2: [order_number] regex is not a valid regular expression" in (
        result.stderr
    )
    assert not (tmp_path / "data" / "rules" / "krause.toml").exists()
    checked = run_cli(
        environment,
        "rules",
        "check",
        str(tmp_path / "data" / "rules" / "krause.draft.toml"),
        check=False,
    )
    assert checked.returncode == 1
    assert "line 2" in checked.stdout


def test_extract_explain_names_the_rule(tmp_path: Path) -> None:
    rules_file = tmp_path / "krause.toml"
    rules_file.write_text(RULES)
    email_file = tmp_path / "mail.eml"
    email_file.write_bytes(_email(5))
    output = run_cli(
        cli_environment(tmp_path / "data"),
        "extract",
        "--explain",
        "--rules",
        str(rules_file),
        str(email_file),
    ).stdout
    assert "rule [tracking_number] in krause.toml, line 4" in output
    assert "order number: 2024/MK/0005" in output


def test_check_takes_shop_slug(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path / "data")
    draft = tmp_path / "data" / "rules" / "krause.draft.toml"
    missing = run_cli(environment, "rules", "check", "krause", check=False)
    assert missing.returncode == 1
    assert missing.stdout.strip() == (
        f"krause: no such rule file, and no draft for shop krause at {draft}: "
        "write the draft there, or give the path of a rule file"
    )
    _write(draft, RULES)
    checked = run_cli(environment, "rules", "check", "krause")
    assert checked.stdout.startswith(f"{draft}: valid, ")


def test_check_missing_file_named(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path / "data")
    result = run_cli(environment, "rules", "check", "nosuch.toml", check=False)
    assert result.returncode == 1
    assert result.stdout.strip() == (
        "nosuch.toml: rule file not found: give the path of a rule file, or a "
        "shop slug to check its draft"
    )


def test_activate_unwritable_rules_folder(tmp_path: Path) -> None:
    # A regular file where the rules folder should be: a folder that cannot
    # be created, even for root.
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    environment = cli_environment(tmp_path / "data", rules_dir=str(blocker / "rules"))
    run_cli(
        environment,
        "shop",
        "add",
        "krause",
        "--name",
        "K",
        "--sender-domain",
        "k.example",
    )
    draft = tmp_path / "krause.draft.toml"
    draft.write_text(RULES)
    result = run_cli(
        environment, "rules", "activate", "krause", "--draft", str(draft), check=False
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"Error: cannot write {blocker / 'rules' / 'krause.toml'}: Not a directory; "
        "the rules folder (BCCTRACK_RULES_DIR) must be a writable folder"
    )

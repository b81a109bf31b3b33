"""Drift alarms: a shop's template change that makes extraction lose a field."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from extractors.message import ParsedMessage
from extractors.model import Customer, Extraction, Kind, ShipmentResult
from mailhandler.inbound import Envelope, store_inbound
from mailhandler.pipeline import Pipeline
from mailhandler.reports import status_report
from mailhandler.settings import Settings
from mailhandler.shops import add_shop
from mailhandler.store.models import DriftAlarm


class TemplateExtractor:
    """Finds a tracking number unless the subject says the template changed."""

    def __call__(self, message: ParsedMessage) -> Extraction:
        number = message.subject.split()[-1]
        shipments = []
        if "new-template" not in message.subject:
            shipments = [ShipmentResult(f"1Z{number}", "ups", None)]
        return Extraction(
            kind=Kind.SHIPPING_CONFIRMATION,
            order_number=number,
            shipments=shipments,
            customer=Customer("c@example.com", None),
        )


def _run(engine: Engine, tmp_path: Path, subjects: list[str]) -> list[int]:
    shop = add_shop(engine, "acme", "Acme", ["acme.example"])
    assert shop.id is not None
    pipeline = Pipeline(
        engine, Settings(data_dir=tmp_path), extract=TemplateExtractor()
    )
    ids = []
    try:
        for subject in subjects:
            raw = f"From: o@acme.example\r\nTo: c@x.example\r\nSubject: {subject}\r\n"
            stored = store_inbound(engine, [shop.id], raw.encode(), Envelope("", []))
            assert pipeline.claim(stored[0].id)
            pipeline.process(stored[0].id)
            ids.append(stored[0].id)
    finally:
        pipeline.close()
    return ids


def _alarms(engine: Engine) -> list[DriftAlarm]:
    with Session(engine) as session:
        return list(session.scalars(select(DriftAlarm)))


def test_template_change_raises_one_alarm(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    subjects = [f"shipped {n}" for n in range(1, 9)]
    subjects += [f"shipped new-template {n}" for n in range(9, 13)]
    with caplog.at_level(logging.WARNING, logger="bcctrack.pipeline"):
        ids = _run(engine, tmp_path, subjects)
    alarms = _alarms(engine)
    assert len(alarms) == 1
    assert alarms[0].field == "tracking_numbers"
    assert alarms[0].kind == "shipping_confirmation"
    assert alarms[0].message_ids == [ids[10], ids[9], ids[8]]
    assert alarms[0].resolved_at is None
    warnings = [r for r in caplog.records if "drift alarm" in r.getMessage()]
    assert len(warnings) == 1
    report = status_report(engine)
    assert [a["shop"] for a in report["drift_alarms"]] == ["acme"]
    assert report["drift_alarms"][0]["message_ids"] == alarms[0].message_ids


def test_alarm_resolves_when_field_returns(engine: Engine, tmp_path: Path) -> None:
    subjects = [f"shipped {n}" for n in range(1, 9)]
    subjects += [f"shipped new-template {n}" for n in range(9, 12)]
    subjects += ["shipped 12"]
    _run(engine, tmp_path, subjects)
    alarms = _alarms(engine)
    assert len(alarms) == 1
    assert alarms[0].resolved_at is not None
    assert status_report(engine)["drift_alarms"] == []


def test_no_alarm_without_history(engine: Engine, tmp_path: Path) -> None:
    _run(engine, tmp_path, [f"shipped new-template {n}" for n in range(1, 8)])
    assert _alarms(engine) == []

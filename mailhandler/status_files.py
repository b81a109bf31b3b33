"""Carrier status files: CSV files of tracking events, imported into the store.

Some carriers deliver status updates as files (often uploaded by SFTP). A
file is UTF-8 CSV with a header row naming at least ``tracking_number``,
``status`` and ``occurred_at``; ``carrier``, ``location``, ``raw_code`` and
``raw_text`` are optional. docs/status-files.md describes the format. Each
row moves the shipments with that tracking number (of one shop, or of every
shop) through ``record_status``; a bad row is reported with its line number
and skipped. A file is imported once per content (SHA-256), in one
transaction, so a file read twice, or by two processes at once, changes the
store once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from extractors.carriers import carriers
from mailhandler.carriers import dhl, fedex, seventeentrack, ups, usps
from mailhandler.store import transaction
from mailhandler.store.models import (
    Order,
    Shipment,
    ShipmentStatus,
    StatusFile,
    utcnow,
)
from mailhandler.triggers import StatusEvent, group_updates, record_status

log = logging.getLogger("bcctrack.poller")

REQUIRED_COLUMNS = ("tracking_number", "status", "occurred_at")
OPTIONAL_COLUMNS = ("carrier", "location", "raw_code", "raw_text")
SOURCE = "file"
_EXAMPLE = "2026-12-04T10:15:00+01:00"
_MAX_ERRORS = 200
# Names an uploading client gives a file it is still writing.
_PARTIAL = re.compile(r"^\.|\.(part|partial|tmp|filepart|uploading)$", re.IGNORECASE)


class StatusFileError(Exception):
    """A status file cannot be read at all (no header, wrong columns, bytes)."""


class RowError(ValueError):
    """An invalid row of a status file: what is wrong, and how to correct it."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}: {fix}")
        self.problem = problem
        self.fix = fix

    def on_line(self, line: int) -> str:
        """Return the message with the row's line number."""
        return f"{self.problem} on line {line}: {self.fix}"


@dataclass
class ImportReport:
    """What one import did; ``errors`` name the line of each skipped row."""

    name: str
    rows: int = 0
    applied: int = 0
    unmatched: int = 0
    notifications: int = 0
    errors: list[str] = field(default_factory=list)
    duplicate: bool = False

    def summary(self) -> str:
        """Return a one-line summary for logs and the command's output."""
        if self.duplicate:
            return f"{self.name}: imported before, skipped"
        return (
            f"{self.name}: {self.rows} rows, {self.applied} applied, "
            f"{self.unmatched} without a shipment, {len(self.errors)} skipped, "
            f"{self.notifications} updates queued"
        )


@dataclass(frozen=True)
class _Row:
    line: int
    number: str
    carrier: str | None
    event: StatusEvent


def status_for(carrier: str | None, value: str, text: str | None) -> ShipmentStatus:
    """Return the canonical status of a status column value.

    The value is a canonical status, or the carrier's own code, mapped with
    the table of the carrier's adapter. Raises RowError when neither fits.
    """
    cleaned = value.strip()
    try:
        return ShipmentStatus(cleaned.lower())
    except ValueError:
        pass
    mapped = _carrier_status(carrier or "", cleaned, text)
    if mapped is None:
        raise RowError(
            f"unknown status {value!r} for carrier {carrier or '(none)'}",
            "use a canonical status or a code of ups, usps, fedex, dhl_* or 17TRACK",
        )
    return mapped


def _carrier_status(carrier: str, code: str, text: str | None) -> ShipmentStatus | None:
    if carrier in dhl.SERVICE_FOR_CARRIER and code.lower() in dhl.STATUS_FOR_CODE:
        return dhl.map_status(code, text)
    if carrier == "ups" and code.upper() in ups.STATUS_FOR_TYPE:
        return ups.map_status(code.upper(), text)
    if carrier == "fedex" and code.upper() in fedex.STATUS_FOR_CODE:
        return fedex.STATUS_FOR_CODE[code.upper()]
    if carrier == "usps" and code.upper() in usps.STATUS_FOR_EVENT_CODE:
        return usps.STATUS_FOR_EVENT_CODE[code.upper()]
    main, _, _ = code.partition("_")
    if main in seventeentrack.STATUS_FOR_MAIN_STATUS:
        return seventeentrack.map_status(main, code)
    return None


def parse_time(value: str) -> datetime:
    """Return an ISO 8601 time with an offset as UTC; raise RowError."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise RowError(
            f"invalid time {value!r}", f"use ISO 8601 with an offset, e.g. {_EXAMPLE}"
        ) from None
    if parsed.tzinfo is None:
        raise RowError(
            f"time {value!r} without a UTC offset", f"add one, e.g. {_EXAMPLE}"
        )
    return parsed.astimezone(UTC)


@cache
def _carrier_slugs() -> frozenset[str]:
    return frozenset({*carriers(), "other"})


def _known_carrier(value: str | None) -> str | None:
    """Return the carrier slug of a row, None when the column is empty."""
    if value is None:
        return None
    slug = value.lower()
    known = _carrier_slugs()
    if slug not in known:
        raise RowError(
            f"unknown carrier {value!r}",
            f"use one of {', '.join(sorted(known))}, or leave it empty",
        )
    return slug


def _normalize_number(value: str) -> str:
    return re.sub(r"\s+", "", value).upper()


def parse_rows(data: bytes, name: str) -> tuple[list[_Row], list[str]]:
    """Return the valid rows of a file and the errors of the others."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise StatusFileError(f"{name}: not UTF-8 text: {error}") from error
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [column.strip().lower() for column in reader.fieldnames or []]
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        raise StatusFileError(
            f"{name}: header row lacks {', '.join(missing)}; expected columns "
            f"{', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}"
        )
    reader.fieldnames = header
    rows: list[_Row] = []
    errors: list[str] = []
    for record in reader:
        line = reader.line_num
        try:
            rows.append(_row(line, record))
        except RowError as error:
            errors.append(error.on_line(line))
    return rows, errors


def _row(line: int, record: dict[str, str | None]) -> _Row:
    def value(column: str) -> str | None:
        raw = record.get(column)
        return raw.strip() if isinstance(raw, str) and raw.strip() else None

    if None in record:
        raise RowError(
            "more fields than the header has columns",
            "quote values that contain commas",
        )
    number = value("tracking_number")
    status = value("status")
    when = value("occurred_at")
    if not number or not status or not when:
        empty = [
            column
            for column, given in zip(
                REQUIRED_COLUMNS, (number, status, when), strict=True
            )
            if not given
        ]
        raise RowError(
            f"empty {', '.join(empty)}",
            f"every row needs {', '.join(REQUIRED_COLUMNS)}",
        )
    carrier = _known_carrier(value("carrier"))
    raw_text = value("raw_text")
    event = StatusEvent(
        status=status_for(carrier, status, raw_text),
        occurred_at=parse_time(when),
        source=SOURCE,
        raw_code=value("raw_code") or status,
        raw_text=raw_text,
        location=value("location"),
    )
    return _Row(line, _normalize_number(number), carrier, event)


def import_status_file(
    engine: Engine,
    data: bytes,
    name: str,
    max_event_age: timedelta,
    shop_id: int | None = None,
) -> ImportReport:
    """Import one file's rows; return the report. Raises StatusFileError.

    Rows apply to the shipments with the row's tracking number (and carrier,
    when both name one); ``shop_id`` limits them to one shop.
    """
    report = ImportReport(name=name)
    rows, report.errors = parse_rows(data, name)
    report.rows = len(rows) + len(report.errors)
    digest = hashlib.sha256(data).hexdigest()
    try:
        with transaction(engine) as session:
            if session.scalars(
                select(col(StatusFile.id)).where(col(StatusFile.sha256) == digest)
            ).first():
                report.duplicate = True
                return report
            created: list[int] = []
            for row in rows:
                _apply_row(session, row, report, max_event_age, shop_id, created)
            # One file moves several parcels of an order at once: their
            # updates go out as one email.
            group_updates(session, created)
            session.add(
                StatusFile(
                    sha256=digest,
                    name=name[:500],
                    rows=report.rows,
                    applied=report.applied,
                    unmatched=report.unmatched,
                    errors=report.errors[:_MAX_ERRORS],
                )
            )
    except IntegrityError:
        # Another process imported the same content at the same moment.
        report = ImportReport(name=name, duplicate=True)
    for error in report.errors:
        log.warning("status file %s: %s", name, error)
    log.info("status file %s", report.summary())
    return report


def _apply_row(
    session: Session,
    row: _Row,
    report: ImportReport,
    max_event_age: timedelta,
    shop_id: int | None,
    created: list[int],
) -> None:
    query = select(Shipment).where(
        func.upper(col(Shipment.tracking_number)) == row.number,
        col(Shipment.withdrawn_at).is_(None),
    )
    if shop_id is not None:
        query = query.where(col(Shipment.shop_id) == shop_id)
    shipments = [
        shipment
        for shipment in session.scalars(query)
        if not (row.carrier and shipment.carrier and shipment.carrier != row.carrier)
    ]
    if not shipments:
        report.unmatched += 1
        log.info(
            "status file %s: line %d: no shipment with tracking number %s",
            report.name,
            row.line,
            row.number,
        )
        return
    for shipment in shipments:
        order = session.get(Order, shipment.order_id)
        assert order is not None
        queued = record_status(session, shipment, order, row.event, max_event_age)
        if queued is not None and queued.id is not None:
            report.notifications += 1
            created.append(queued.id)
    report.applied += 1


# --- the drop folder ---------------------------------------------------------


def _unique_target(folder: Path, name: str) -> Path:
    target = folder / name
    if not target.exists():
        return target
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
    return folder / f"{stamp}-{name}"


def _move(path: Path, folder: Path) -> Path | None:
    folder.mkdir(exist_ok=True)
    target = _unique_target(folder, path.name)
    try:
        os.replace(path, target)
    except FileNotFoundError:
        # Another poller moved it first.
        return None
    return target


class DropFolder:
    """Watches a folder for status files and imports each complete one.

    A file counts as complete when its size and modification time are the
    same on two looks, ``scan_seconds`` apart, because SFTP uploads arrive
    in pieces. Imported files move to ``processed/``; files that cannot be
    read at all move to ``failed/``, with a ``.error`` file saying why.
    """

    def __init__(self, engine: Engine, folder: Path, max_event_age: timedelta):
        self.engine = engine
        self.folder = folder
        self.max_event_age = max_event_age
        self._seen: dict[Path, tuple[int, int]] = {}

    def scan(self) -> list[ImportReport]:
        """Import the files that are complete now; return their reports."""
        self.folder.mkdir(parents=True, exist_ok=True)
        reports = []
        current: dict[Path, tuple[int, int]] = {}
        for path in sorted(self.folder.iterdir()):
            if not path.is_file() or _PARTIAL.search(path.name):
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            signature = (stat.st_size, stat.st_mtime_ns)
            current[path] = signature
            if self._seen.get(path) != signature:
                continue
            report = self._import(path)
            if report is not None:
                reports.append(report)
                current.pop(path, None)
        self._seen = current
        return reports

    def _import(self, path: Path) -> ImportReport | None:
        try:
            data = path.read_bytes()
            report = import_status_file(
                self.engine, data, path.name, self.max_event_age
            )
        except FileNotFoundError:
            return None
        except StatusFileError as error:
            log.error("status file %s failed: %s", path.name, error)
            target = _move(path, self.folder / "failed")
            if target is not None:
                target.with_name(target.name + ".error").write_text(f"{error}\n")
            return None
        target = _move(path, self.folder / "processed")
        if target is not None and report.errors:
            target.with_name(target.name + ".errors").write_text(
                "\n".join(report.errors) + "\n"
            )
        return report

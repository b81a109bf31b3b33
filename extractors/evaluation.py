"""Scoring extractions against a ground-truth table (labels.tsv format).

The table has one row per email: ``path``, ``kind``, ``order_number``,
``tracking_numbers`` (';'-separated), ``carrier``, ``customer_email``,
``language`` and ``notes``, where notes may list accepted alternatives as
``alt_order_numbers=...``. An empty cell means the email has no such value,
so extracting one there is a false value. The carrier is scored only for
emails with tracking numbers.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from extractors.model import Extraction

FIELDS = (
    "kind",
    "order_number",
    "tracking_numbers",
    "carrier",
    "customer_email",
    "language",
)
_ALTERNATIVES = re.compile(
    r"alt_(order_numbers|customer_names?)=([^\s;,]+(?:[;,][^\s;,]+)*)"
)


@dataclass
class FieldScore:
    """Counts for one field over all files."""

    name: str
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    files: int = 0

    @property
    def precision(self) -> float | None:
        """Correct values among all values extracted; None when none were."""
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else None

    @property
    def recall(self) -> float | None:
        """Correct values among all expected values; None when none were."""
        expected = self.true_positives + self.false_negatives
        return self.true_positives / expected if expected else None


@dataclass(frozen=True)
class Mistake:
    """One miss (an expected value not extracted) or one false value."""

    file: str
    field: str
    expected: str | None
    extracted: str | None


@dataclass
class Report:
    """The scores of one evaluation run."""

    scores: dict[str, FieldScore] = field(
        default_factory=lambda: {name: FieldScore(name) for name in FIELDS}
    )
    mistakes: list[Mistake] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    files: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Return the report as the JSON object of ``bcctrack eval --json``."""
        return {
            "files": self.files,
            "seconds": round(self.seconds, 3),
            "emails_per_second": round(self.files / self.seconds, 1)
            if self.seconds
            else None,
            "fields": {
                name: {
                    "precision": _rounded(score.precision),
                    "recall": _rounded(score.recall),
                    "files": score.files,
                    "true_positives": score.true_positives,
                    "false_positives": score.false_positives,
                    "false_negatives": score.false_negatives,
                }
                for name, score in self.scores.items()
            },
            "mistakes": [m.__dict__ for m in self.mistakes],
            "errors": [{"file": f, "error": e} for f, e in self.errors],
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def read_labels(text: str) -> list[dict[str, str]]:
    """Return the rows of a labels table (tab-separated, CSV quoting)."""
    return list(csv.DictReader(io.StringIO(text), delimiter="\t"))


def _alternatives(notes: str, name: str) -> set[str]:
    values: set[str] = set()
    for match in _ALTERNATIVES.finditer(notes):
        if match.group(1).startswith(name):
            values.update(re.split(r"[;,]", match.group(2)))
    return values


def _score_single(
    report: Report,
    file: str,
    name: str,
    expected: set[str],
    extracted: str | None,
) -> None:
    score = report.scores[name]
    score.files += 1
    if extracted and extracted in expected:
        score.true_positives += 1
        return
    if extracted:
        score.false_positives += 1
        report.mistakes.append(Mistake(file, name, _first(expected), extracted))
    if expected:
        score.false_negatives += 1
        if not extracted:
            report.mistakes.append(Mistake(file, name, _first(expected), None))


def _first(values: Iterable[str]) -> str | None:
    return next(iter(sorted(values)), None)


def score_file(report: Report, row: dict[str, str], extraction: Extraction) -> None:
    """Add one file's comparison to ``report``."""
    file = row["path"]
    notes = row.get("notes", "")
    order = {row["order_number"]} if row.get("order_number") else set()
    if order:
        order |= _alternatives(notes, "order_numbers")
    kind = str(extraction.kind)
    _score_single(report, file, "kind", {row["kind"] or "other"}, kind)
    _score_single(report, file, "order_number", order, extraction.order_number)
    email = (extraction.customer.email or "").lower() or None
    expected_email = (
        {row["customer_email"].lower()} if row.get("customer_email") else set()
    )
    _score_single(report, file, "customer_email", expected_email, email)
    language = {row["language"]} if row.get("language") else set()
    _score_single(report, file, "language", language, extraction.language)

    expected_numbers = {n for n in row.get("tracking_numbers", "").split(";") if n}
    found = {s.tracking_number: s.carrier for s in extraction.shipments}
    score = report.scores["tracking_numbers"]
    score.files += 1
    for number in sorted(set(found) | expected_numbers):
        if number in found and number in expected_numbers:
            score.true_positives += 1
        elif number in found:
            score.false_positives += 1
            report.mistakes.append(Mistake(file, "tracking_numbers", None, number))
        else:
            score.false_negatives += 1
            report.mistakes.append(Mistake(file, "tracking_numbers", number, None))
    if expected_numbers:
        carriers = {row["carrier"]} if row.get("carrier") else set()
        found_carriers = [found[n] for n in expected_numbers if found.get(n)]
        found_carriers += [c for c in found.values() if c]
        carrier = found_carriers[0] if found_carriers else None
        _score_single(report, file, "carrier", carriers, carrier)

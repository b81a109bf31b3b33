"""Extraction measured on the labelled corpus."""

from __future__ import annotations

from pathlib import Path

from extractors import extract
from extractors.evaluation import Report, read_labels, score_file

# The targets extraction must hold: (precision, recall) per field.
TARGETS = {
    "tracking_numbers": (0.99, 0.97),
    "order_number": (0.97, 0.97),
    "carrier": (0.97, 0.97),
    "customer_email": (0.97, 0.97),
    "kind": (0.95, 0.95),
}


def _report(corpus_dir: Path) -> Report:
    report = Report()
    for row in read_labels((corpus_dir / "labels.tsv").read_text(encoding="utf-8")):
        extraction = extract((corpus_dir / row["path"]).read_bytes())
        report.files += 1
        score_file(report, row, extraction)
    return report


def test_corpus_meets_targets(corpus_dir: Path) -> None:
    report = _report(corpus_dir)
    assert report.files >= 70
    for name, (precision, recall) in TARGETS.items():
        score = report.scores[name]
        assert score.precision is not None, name
        assert score.recall is not None, name
        assert score.precision >= precision, (name, report.mistakes)
        assert score.recall >= recall, (name, report.mistakes)


def test_no_corpus_file_crashes(corpus_dir: Path) -> None:
    for path in sorted(corpus_dir.rglob("*.eml")):
        raw = path.read_bytes()
        extract(raw)
        # Truncated copies stand for messages cut off in transit.
        extract(raw[: len(raw) // 2])
        extract(raw[: len(raw) // 7])

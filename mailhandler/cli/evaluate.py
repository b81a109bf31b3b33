"""``bcctrack eval``: extraction scored against a ground-truth table."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from extractors import extract
from extractors.evaluation import Report, read_labels, score_file
from mailhandler.logs import quiet_parser_logs


def evaluate(folder: Path, labels: Path) -> Report:
    """Extract every file the table lists and score it; return the report."""
    report = Report()
    for row in read_labels(labels.read_text(encoding="utf-8")):
        path = folder / row["path"]
        try:
            raw = path.read_bytes()
        except OSError as error:
            report.errors.append((row["path"], f"cannot read: {error}"))
            continue
        started = time.perf_counter()
        try:
            extraction = extract(raw)
        except Exception as error:  # a crash is scored, not raised
            report.errors.append((row["path"], f"{type(error).__name__}: {error}"))
            continue
        finally:
            report.seconds += time.perf_counter() - started
        report.files += 1
        score_file(report, row, extraction)
    return report


def _score(value: float | None) -> str:
    # A precision with no value extracted, or a recall with none expected,
    # is undefined rather than perfect.
    return "n/a" if value is None else f"{value:.3f}"


def _print_report(report: Report) -> None:
    if report.files == 0:
        click.echo("no files scored: the labels table lists no readable email")
    click.echo(f"{'field':<16} {'precision':>9} {'recall':>7} {'files':>6}")
    for name, score in report.scores.items():
        click.echo(
            f"{name:<16} {_score(score.precision):>9} {_score(score.recall):>7} "
            f"{score.files:>6}"
        )
    if report.mistakes:
        click.echo("\nmisses and false values:")
    for mistake in report.mistakes:
        what = "miss" if mistake.extracted is None else "false"
        click.echo(
            f"  {what:<5} {mistake.field:<16} {mistake.file}: "
            f"expected {mistake.expected!r}, extracted {mistake.extracted!r}"
        )
    for file, error in report.errors:
        click.echo(f"  error {file}: {error}")
    rate = report.files / report.seconds if report.seconds else 0.0
    click.echo(
        f"\nthroughput: {rate:.1f} emails/s "
        f"({report.files} files in {report.seconds:.2f} s of extraction)"
    )


@click.command("eval")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--labels",
    "labels_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Ground-truth table (tab-separated); default: FOLDER/labels.tsv.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def eval_command(folder: Path, labels_file: Path | None, as_json: bool) -> None:
    """Score extraction on the emails in FOLDER against a ground-truth table.

    Prints precision, recall and file count per field ("n/a" where nothing
    was extracted or expected), every miss and false value, and the
    throughput. The exit status is 0 whatever the scores, and 2 when FOLDER
    or the labels table is missing.
    """
    labels = labels_file or folder / "labels.tsv"
    if not labels.is_file():
        raise click.UsageError(
            f"labels table not found: {labels}; pass one with --labels"
        )
    quiet_parser_logs()
    report = evaluate(folder, labels)
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        _print_report(report)

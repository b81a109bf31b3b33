"""``bcctrack extract``: offline extraction of email files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from extractors import Candidate, Extraction, extract
from extractors.rules import ShopRules
from extractors.shoprules import RuleFileError
from mailhandler.cli.common import CliState, pass_state, print_json_line
from mailhandler.logs import quiet_parser_logs
from mailhandler.rules import RuleBook


def extract_file(path: str, rules: ShopRules | None = None) -> dict[str, Any]:
    """Return the ``extract --json`` object of one file."""
    return _extract_file(path, rules)[0]


def _extract_file(
    path: str, rules: ShopRules | None = None
) -> tuple[dict[str, Any], Extraction | None]:
    result: dict[str, Any] = {"file": path}
    try:
        raw = Path(path).read_bytes()
        extraction = extract(raw, rules)
    except Exception as error:  # any failure is this file's, not the command's
        result.update(
            kind=None,
            order_number=None,
            shipments=[],
            customer={"email": None, "name": None},
            language=None,
            error=f"{type(error).__name__}: {error}",
        )
        return result, None
    result.update(extraction.to_json())
    result["error"] = None
    return result, extraction


@click.command("extract")
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
@click.option(
    "--explain",
    is_flag=True,
    help="Also print every candidate, where it was found, and why it won or lost.",
)
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Apply this shop rule file (docs/rules.md) as the strongest layer.",
)
@pass_state
def extract_command(
    state: CliState,
    files: tuple[str, ...],
    as_json: bool,
    explain: bool,
    rules_file: Path | None,
) -> None:
    """Extract order, shipments and customer from email FILES, offline."""
    quiet_parser_logs()
    rules = None
    if rules_file is not None:
        settings = state.load()
        try:
            rules = RuleBook(settings.rules_folder, settings.rule_timeout).load(
                rules_file
            )
        except (OSError, RuleFileError) as error:
            raise click.ClickException(str(error)) from error
    failed = False
    for path in files:
        result, extraction = _extract_file(path, rules)
        failed = failed or result["error"] is not None
        if as_json:
            if explain and extraction is not None:
                result["candidates"] = [
                    _candidate_json(c) for c in extraction.candidates
                ]
            print_json_line(result)
            continue
        _print_text(result)
        if explain and extraction is not None:
            print_candidates(extraction)
    sys.exit(1 if failed else 0)


def _candidate_json(candidate: Candidate) -> dict[str, Any]:
    return {
        "field": str(candidate.field),
        "value": candidate.value,
        "confidence": candidate.confidence,
        "extractor": candidate.evidence.extractor,
        "location": candidate.evidence.location,
        "matched": candidate.evidence.matched,
        "reason": candidate.evidence.reason,
        "carrier": candidate.carrier,
        "accepted": candidate.accepted,
        "verdict": candidate.verdict,
    }


def print_candidates(extraction: Extraction) -> None:
    """Print every candidate with its evidence and verdict."""
    if extraction.forwarded:
        click.echo(f"  forwarded: {extraction.forwarded}")
    click.echo("  candidates:")
    for candidate in extraction.candidates:
        mark = {True: "+", False: "-", None: "?"}[candidate.accepted]
        evidence = candidate.evidence
        click.echo(
            f"    {mark} {candidate.field} {candidate.value!r} "
            f"[{evidence.extractor} @ {evidence.location}, {candidate.confidence:.2f}]"
        )
        click.echo(f"        found: {evidence.reason}; matched {evidence.matched!r}")
        click.echo(f"        verdict: {candidate.verdict or 'not considered'}")


def _print_text(result: dict[str, Any]) -> None:
    click.echo(result["file"])
    if result["error"]:
        click.echo(f"  error: {result['error']}")
        return
    click.echo(f"  kind: {result['kind']}")
    click.echo(f"  order number: {result['order_number'] or '-'}")
    customer = result["customer"]
    click.echo(f"  customer: {customer['name'] or '-'} <{customer['email'] or '-'}>")
    click.echo(f"  language: {result['language'] or '-'}")
    for shipment in result["shipments"]:
        carrier = shipment["carrier"] or "unknown carrier"
        link = shipment["tracking_url"] or ""
        click.echo(f"  shipment: {shipment['tracking_number']} {carrier} {link}")

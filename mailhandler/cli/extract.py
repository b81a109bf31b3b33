"""``bcctrack extract``: offline extraction of email files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from extractors import extract
from mailhandler.cli.common import print_json_line


def extract_file(path: str) -> dict[str, Any]:
    """Return the ``extract --json`` object of one file."""
    result: dict[str, Any] = {"file": path}
    try:
        raw = Path(path).read_bytes()
        extraction = extract(raw)
    except Exception as error:  # any failure is this file's, not the command's
        result.update(
            kind=None,
            order_number=None,
            shipments=[],
            customer={"email": None, "name": None},
            language=None,
            error=f"{type(error).__name__}: {error}",
        )
        return result
    result.update(extraction.to_json())
    result["error"] = None
    return result


@click.command("extract")
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
def extract_command(files: tuple[str, ...], as_json: bool) -> None:
    """Extract order, shipments and customer from email FILES, offline."""
    failed = False
    for path in files:
        result = extract_file(path)
        failed = failed or result["error"] is not None
        if as_json:
            print_json_line(result)
        else:
            _print_text(result)
    sys.exit(1 if failed else 0)


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

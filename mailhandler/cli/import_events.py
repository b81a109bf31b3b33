"""``bcctrack import-events``: carrier status files into the store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click

from mailhandler.cli.common import CliState, pass_state
from mailhandler.shops import ShopError, get_shop
from mailhandler.status_files import StatusFileError, import_status_file


@click.command("import-events")
@click.argument(
    "files",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option("--shop", "shop_slug", default=None, help="Apply rows to this shop only.")
@pass_state
def import_events(
    state: CliState, files: tuple[Path, ...], shop_slug: str | None
) -> None:
    """Import carrier status FILES (CSV, see docs/status-files.md).

    Rows with errors are listed with their line number and skipped; a file
    imported before is skipped whole. Exits with 1 when a file could not be
    read or a row was skipped.
    """
    settings, engine = state.open()
    shop_id = None
    if shop_slug is not None:
        try:
            shop_id = get_shop(engine, shop_slug).id
        except ShopError as error:
            raise click.ClickException(str(error)) from error
    max_age = timedelta(hours=settings.max_event_age_hours)
    problems = False
    for path in files:
        try:
            report = import_status_file(
                engine, path.read_bytes(), path.name, max_age, shop_id
            )
        except StatusFileError as error:
            click.echo(f"error: {error}", err=True)
            problems = True
            continue
        for problem in report.errors:
            click.echo(f"{path}: {problem}", err=True)
        problems = problems or bool(report.errors)
        click.echo(report.summary())
    if problems:
        raise SystemExit(1)

"""The ``bcctrack`` command."""

from __future__ import annotations

from pathlib import Path

import click

from mailhandler.cli.carriers import carriers
from mailhandler.cli.common import CliState
from mailhandler.cli.credentials import credentials
from mailhandler.cli.evaluate import eval_command
from mailhandler.cli.extract import extract_command
from mailhandler.cli.import_events import import_events
from mailhandler.cli.messages import messages
from mailhandler.cli.notifications import notifications
from mailhandler.cli.optout import optout
from mailhandler.cli.orders import orders
from mailhandler.cli.preview import preview
from mailhandler.cli.reprocess import reprocess
from mailhandler.cli.rules import rules
from mailhandler.cli.serve import serve
from mailhandler.cli.settings import settings_command
from mailhandler.cli.shop import shop
from mailhandler.cli.status import status
from mailhandler.cli.track import track


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML settings file; takes the place of BCCTRACK_CONFIG.",
)
@click.version_option(package_name="bcctrack")
@click.pass_context
def main(context: click.Context, config: Path | None) -> None:
    """bcctrack: order and shipment tracking from the BCC copies of shop emails."""
    context.obj = CliState(config=config)


for command in (
    serve,
    shop,
    orders,
    messages,
    reprocess,
    notifications,
    rules,
    status,
    settings_command,
    extract_command,
    eval_command,
    track,
    preview,
    optout,
    import_events,
    carriers,
):
    main.add_command(command)
shop.add_command(credentials)

"""``bcctrack messages``."""

from __future__ import annotations

import click

from mailhandler.cli.common import CliState, pass_state, print_json_line
from mailhandler.reports import message_reports
from mailhandler.shops import ShopError, get_shop
from mailhandler.store.models import InboundState


@click.command()
@click.option(
    "--state",
    "state_filter",
    type=click.Choice([s.value for s in InboundState]),
    default=None,
    help="Only messages in this state.",
)
@click.option("--shop", "shop_slug", default=None, help="Only this shop's messages.")
@click.option(
    "--limit", type=int, default=None, help="At most this many, newest first."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message.")
@pass_state
def messages(
    state: CliState,
    state_filter: str | None,
    shop_slug: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """List inbound messages with their state and reason, newest first."""
    _, engine = state.open()
    if shop_slug is not None:
        try:
            get_shop(engine, shop_slug)
        except ShopError as error:
            raise click.ClickException(str(error)) from error
    for report in message_reports(engine, state_filter, shop_slug, limit):
        if as_json:
            print_json_line(report)
            continue
        reason = f"  {report['reason']}" if report["reason"] else ""
        defects = f"  defects: {len(report['defects'])}" if report["defects"] else ""
        click.echo(
            f"{report['id']}  {report['shop']}  {report['state']}  "
            f"{report['kind'] or '-'}  {report['received_at']}{reason}{defects}"
        )

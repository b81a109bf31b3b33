"""``bcctrack orders``."""

from __future__ import annotations

import click

from mailhandler.cli.common import CliState, pass_state, print_json_line
from mailhandler.reports import order_reports
from mailhandler.shops import ShopError, get_shop


@click.command()
@click.option("--shop", "shop_slug", default=None, help="Only this shop's orders.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per order.")
@pass_state
def orders(state: CliState, shop_slug: str | None, as_json: bool) -> None:
    """List orders with their shipments and customer updates.

    An update with a reason shows it in brackets: why it was suppressed, or
    the last error of a failed or retried one.
    """
    _, engine = state.open()
    if shop_slug is not None:
        try:
            get_shop(engine, shop_slug)
        except ShopError as error:
            raise click.ClickException(str(error)) from error
    for report in order_reports(engine, shop_slug):
        if as_json:
            print_json_line(report)
            continue
        customer = report["customer"]["email"] or "-"
        number = report["order_number"] or "(no order number)"
        click.echo(f"{report['shop']}  {number}  {customer}  {report['state']}")
        for shipment in report["shipments"]:
            carrier = shipment["carrier"] or "unknown carrier"
            click.echo(
                f"  shipment {shipment['tracking_number']}  {carrier}  "
                f"{shipment['status']}"
            )
        for notification in report["notifications"]:
            when = notification["sent_at"] or notification["created_at"]
            reason = f"  ({notification['reason']})" if notification["reason"] else ""
            click.echo(
                f"  update {notification['update']}  {notification['state']}  "
                f"{when}{reason}"
            )

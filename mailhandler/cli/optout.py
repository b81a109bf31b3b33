"""``bcctrack optout``: addresses that get no more updates from a shop."""

from __future__ import annotations

import click

from mailhandler.cli.common import CliState, pass_state, print_json_line
from mailhandler.optout import OptOutError, add_opt_out, list_opt_outs, remove_opt_out
from mailhandler.shops import ShopError, get_shop


@click.group()
def optout() -> None:
    """Add, remove and list opted-out customer addresses."""


@optout.command("add")
@click.argument("address")
@click.option("--shop", "shop_slug", required=True, help="The shop's slug.")
@pass_state
def add(state: CliState, address: str, shop_slug: str) -> None:
    """Stop every further update of shop SHOP to ADDRESS."""
    _, engine = state.open()
    try:
        shop = get_shop(engine, shop_slug)
        assert shop.id is not None
        added = add_opt_out(engine, shop.id, address, "admin")
    except (ShopError, OptOutError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(
        f"{address} {'opted out' if added else 'had opted out before'} "
        f"of shop {shop_slug!r}",
        err=True,
    )


@optout.command("remove")
@click.argument("address")
@click.option("--shop", "shop_slug", required=True, help="The shop's slug.")
@pass_state
def remove(state: CliState, address: str, shop_slug: str) -> None:
    """Let shop SHOP send updates to ADDRESS again."""
    _, engine = state.open()
    try:
        shop = get_shop(engine, shop_slug)
        assert shop.id is not None
        removed = remove_opt_out(engine, shop.id, address)
    except (ShopError, OptOutError) as error:
        raise click.ClickException(str(error)) from error
    if not removed:
        raise click.ClickException(f"{address} has not opted out of {shop_slug!r}")
    click.echo(f"{address} gets updates from shop {shop_slug!r} again", err=True)


@optout.command("list")
@click.option("--shop", "shop_slug", default=None, help="Only this shop's opt-outs.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_state
def list_(state: CliState, shop_slug: str | None, as_json: bool) -> None:
    """List opted-out addresses with their shop, source and time."""
    _, engine = state.open()
    for entry in list_opt_outs(engine, shop_slug):
        if as_json:
            print_json_line(
                {
                    "shop": entry.shop,
                    "address": entry.address,
                    "source": entry.source,
                    "created_at": entry.created_at,
                }
            )
        else:
            click.echo(
                f"{entry.shop}\t{entry.address}\t{entry.source}\t{entry.created_at}"
            )

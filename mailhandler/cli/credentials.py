"""``bcctrack shop credentials``: a shop's own carrier API credentials."""

from __future__ import annotations

import sys

import click

from mailhandler.cli.common import CliState, pass_state, print_json_line
from mailhandler.shop_credentials import (
    ADAPTER_FIELDS,
    CredentialError,
    list_credentials,
    remove_credentials,
    set_credentials,
)
from mailhandler.shops import ShopError, get_shop


@click.group()
def credentials() -> None:
    """Set, list and remove a shop's own carrier credentials.

    Some carriers show a shop only its own parcels; their adapter then uses
    the shop's credentials instead of the configured ones.
    """


@credentials.command("set")
@click.argument("slug")
@click.argument("adapter", type=click.Choice(sorted(ADAPTER_FIELDS)))
@click.option(
    "--api-key", default="", help="API key (dhl, seventeentrack); - reads stdin."
)
@click.option("--client-id", default="", help="OAuth client id (ups, fedex, usps).")
@click.option(
    "--client-secret",
    default="",
    help="OAuth client secret (ups, fedex, usps); - reads stdin.",
)
@pass_state
def set_(
    state: CliState,
    slug: str,
    adapter: str,
    api_key: str,
    client_id: str,
    client_secret: str,
) -> None:
    """Store shop SLUG's credentials for ADAPTER, replacing older ones."""
    # "-" keeps a secret out of the shell history and the process list.
    if api_key == "-":
        api_key = sys.stdin.readline().strip()
    if client_secret == "-":
        client_secret = sys.stdin.readline().strip()
    _, engine = state.open()
    try:
        shop = get_shop(engine, slug)
        resumed = set_credentials(
            engine, shop, adapter, api_key, client_id, client_secret
        )
    except (ShopError, CredentialError) as error:
        raise click.ClickException(str(error)) from error
    ended = "; its pause ended" if resumed.was_paused else ""
    click.echo(
        f"{adapter} credentials of shop {slug!r} stored{ended}; "
        f"{resumed.released} waiting shipment(s) due now",
        err=True,
    )


@credentials.command("list")
@click.argument("slug")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_state
def list_(state: CliState, slug: str, as_json: bool) -> None:
    """List shop SLUG's carrier credentials; secrets show only their end."""
    _, engine = state.open()
    try:
        shop = get_shop(engine, slug)
    except ShopError as error:
        raise click.ClickException(str(error)) from error
    for item in list_credentials(engine, shop):
        if as_json:
            print_json_line(
                {
                    "adapter": item.adapter,
                    "client_id": item.client_id,
                    "api_key": item.api_key_hint,
                    "client_secret": item.client_secret_hint,
                }
            )
        else:
            click.echo(
                f"{item.adapter}\t{item.client_id or '-'}\t"
                f"{item.api_key_hint or '-'}\t{item.client_secret_hint or '-'}"
            )


@credentials.command("remove")
@click.argument("slug")
@click.argument("adapter")
@pass_state
def remove(state: CliState, slug: str, adapter: str) -> None:
    """Delete shop SLUG's credentials for ADAPTER."""
    _, engine = state.open()
    try:
        shop = get_shop(engine, slug)
    except ShopError as error:
        raise click.ClickException(str(error)) from error
    if not remove_credentials(engine, shop, adapter):
        raise click.ClickException(f"shop {slug!r} has no {adapter} credentials")
    click.echo(f"{adapter} credentials of shop {slug!r} removed", err=True)

"""``bcctrack shop``: register and list shops."""

from __future__ import annotations

import click

from mailhandler.cli.common import CliState, pass_state, print_json_line
from mailhandler.shops import ShopError, add_shop, bcc_address, list_shops


@click.group()
def shop() -> None:
    """Register and list shops."""


@shop.command("add")
@click.argument("slug")
@click.option("--name", required=True, help="The shop's name, as customers know it.")
@click.option(
    "--sender-domain",
    "sender_domains",
    multiple=True,
    required=True,
    help="A domain the shop sends from (subdomains count); repeat for more.",
)
@click.option(
    "--language",
    default="en",
    show_default=True,
    help="ISO 639-1 code of the language for customer updates.",
)
@pass_state
def add(
    state: CliState,
    slug: str,
    name: str,
    sender_domains: tuple[str, ...],
    language: str,
) -> None:
    """Register shop SLUG and print its BCC address on the first line."""
    settings, engine = state.open()
    try:
        created = add_shop(engine, slug, name, list(sender_domains), language)
    except ShopError as error:
        raise click.ClickException(str(error)) from error
    click.echo(bcc_address(created, settings.intake_domain))
    click.echo(
        f"Shop {created.slug!r} ({created.name}) added. Add the address above as a "
        "BCC to the shop's order and shipping emails.",
        err=True,
    )


@shop.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_state
def list_(state: CliState, as_json: bool) -> None:
    """List the shops with their BCC addresses."""
    settings, engine = state.open()
    for item in list_shops(engine):
        address = bcc_address(item, settings.intake_domain)
        if as_json:
            print_json_line(
                {
                    "slug": item.slug,
                    "name": item.name,
                    "address": address,
                    "sender_domains": item.sender_domains,
                    "language": item.language,
                }
            )
        else:
            domains = ",".join(item.sender_domains)
            click.echo(
                f"{item.slug}\t{address}\t{item.language}\t{domains}\t{item.name}"
            )

"""``bcctrack shop``: register and list shops."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import click

from mailhandler.cli.common import CliState, pass_state, print_json_line
from mailhandler.render import available_languages
from mailhandler.shops import (
    SENDER_POLICIES,
    UNVERIFIED_POLICIES,
    ShopChanges,
    ShopError,
    add_shop,
    bcc_address,
    get_shop,
    list_shops,
    remove_shop,
    restore_shop,
    retired_addresses,
    rotate_token,
    update_shop,
)
from mailhandler.store.models import Shop


@click.group()
def shop() -> None:
    """Register, change and list shops."""


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
    help=(
        "ISO 639-1 code of the shop's language: customer updates use the "
        "language of the shop's email when texts exist for it, else this one."
    ),
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
    _warn_language(created.language)
    click.echo(
        f"Shop {created.slug!r} ({created.name}) added. Add the address above as a "
        "BCC to the shop's order and shipping emails.",
        err=True,
    )


def _warn_language(language: str) -> None:
    available = available_languages()
    if language not in available:
        click.echo(
            f"warning: no update texts in {language!r}; customer updates of this "
            f"shop fall back to English (texts exist for {', '.join(available)})",
            err=True,
        )


def _shop_json(item: Shop, intake_domain: str) -> dict[str, Any]:
    previous = [
        {"address": address, "valid_until": until.isoformat(timespec="seconds")}
        for address, until in retired_addresses(item, intake_domain)
    ]
    return {
        "slug": item.slug,
        "name": item.name,
        "address": bcc_address(item, intake_domain),
        "sender_domains": item.sender_domains,
        "language": item.language,
        "brand_color": item.brand_color,
        "logo_url": item.logo_url,
        "outbound": item.outbound,
        "sender_policy": item.sender_policy,
        "unverified_policy": item.unverified_policy,
        "previous_addresses": previous,
        "removed": item.removed_at is not None,
    }


@shop.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--all", "include_removed", is_flag=True, help="Also removed shops.")
@pass_state
def list_(state: CliState, as_json: bool, include_removed: bool) -> None:
    """List the shops with their BCC addresses."""
    settings, engine = state.open()
    for item in list_shops(engine, include_removed):
        if as_json:
            print_json_line(_shop_json(item, settings.intake_domain))
            continue
        address = bcc_address(item, settings.intake_domain)
        domains = ",".join(item.sender_domains)
        removed = "\tremoved" if item.removed_at is not None else ""
        click.echo(
            f"{item.slug}\t{address}\t{item.language}\t{domains}\t{item.name}{removed}"
        )


@shop.command("show")
@click.argument("slug")
@pass_state
def show(state: CliState, slug: str) -> None:
    """Print every setting of shop SLUG as JSON."""
    settings, engine = state.open()
    try:
        item = get_shop(engine, slug)
    except ShopError as error:
        raise click.ClickException(str(error)) from error
    click.echo(json.dumps(_shop_json(item, settings.intake_domain), indent=2))


@shop.command("update")
@click.argument("slug")
@click.option("--name", default=None, help="New display name.")
@click.option(
    "--add-sender-domain", "add_domains", multiple=True, help="Add a sender domain."
)
@click.option(
    "--remove-sender-domain",
    "remove_domains",
    multiple=True,
    help="Remove a sender domain.",
)
@click.option("--language", default=None, help="ISO 639-1 code of the updates.")
@click.option("--brand-color", default=None, help="Colour of the updates, #rrggbb.")
@click.option("--logo-url", default=None, help="https:// URL of the logo; '' clears.")
@click.option(
    "--outbound",
    default=None,
    help="The shop's own relay, smtp://host:port; '' returns to the default.",
)
@click.option(
    "--sender-policy",
    type=click.Choice(SENDER_POLICIES),
    default=None,
    help="dkim: a valid DKIM signature by a sender domain; domain: the From: "
    "or envelope sender's domain.",
)
@click.option(
    "--unverified",
    "unverified_policy",
    type=click.Choice(UNVERIFIED_POLICIES),
    default=None,
    help="quarantine: keep unverified mail for admins; reject: refuse it at SMTP.",
)
@pass_state
def update(
    state: CliState,
    slug: str,
    name: str | None,
    add_domains: tuple[str, ...],
    remove_domains: tuple[str, ...],
    language: str | None,
    brand_color: str | None,
    logo_url: str | None,
    outbound: str | None,
    sender_policy: str | None,
    unverified_policy: str | None,
) -> None:
    """Change shop SLUG's settings; options not given stay as they are."""
    settings, engine = state.open()
    changes = ShopChanges(
        name=name,
        add_domains=add_domains,
        remove_domains=remove_domains,
        language=language,
        brand_color=brand_color,
        logo_url=logo_url,
        outbound=outbound,
        sender_policy=sender_policy,
        unverified_policy=unverified_policy,
    )
    try:
        item = update_shop(engine, slug, changes)
    except ShopError as error:
        raise click.ClickException(str(error)) from error
    if language is not None:
        _warn_language(item.language)
    click.echo(json.dumps(_shop_json(item, settings.intake_domain), indent=2))


@shop.command("rotate-token")
@click.argument("slug")
@click.option(
    "--grace-hours",
    type=float,
    default=168.0,
    show_default=True,
    help="Hours the old address keeps working; 0 stops it at once.",
)
@pass_state
def rotate(state: CliState, slug: str, grace_hours: float) -> None:
    """Give shop SLUG a new BCC address and print it on the first line."""
    settings, engine = state.open()
    try:
        item = rotate_token(engine, slug, timedelta(hours=grace_hours))
    except ShopError as error:
        raise click.ClickException(str(error)) from error
    click.echo(bcc_address(item, settings.intake_domain))
    old = retired_addresses(item, settings.intake_domain)
    if not old:
        click.echo("The old addresses no longer work.", err=True)
    for address, until in old:
        click.echo(
            f"{address} works until {until.isoformat(timespec='minutes')}.", err=True
        )


@shop.command("remove")
@click.argument("slug")
@click.option(
    "--purge",
    is_flag=True,
    help="Also delete the shop's messages, orders, shipments and updates.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def remove(state: CliState, slug: str, purge: bool, yes: bool) -> None:
    """Stop shop SLUG: no mail accepted, no polls, no customer updates.

    Its data stays (and 'bcctrack shop restore' brings it back) unless
    --purge deletes it.
    """
    _, engine = state.open()
    try:
        get_shop(engine, slug)
    except ShopError as error:
        raise click.ClickException(str(error)) from error
    what = "delete shop {!r} and all its data" if purge else "remove shop {!r}"
    if not yes:
        click.confirm(what.format(slug).capitalize() + "?", abort=True)
    try:
        remove_shop(engine, slug, purge=purge)
    except ShopError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Shop {slug!r} {'purged' if purge else 'removed'}.")


@shop.command("restore")
@click.argument("slug")
@pass_state
def restore(state: CliState, slug: str) -> None:
    """Accept mail for removed shop SLUG again and poll its open shipments."""
    settings, engine = state.open()
    try:
        item = restore_shop(engine, slug)
    except ShopError as error:
        raise click.ClickException(str(error)) from error
    click.echo(bcc_address(item, settings.intake_domain))

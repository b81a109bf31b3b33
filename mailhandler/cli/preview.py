"""``bcctrack preview``: one customer update rendered with sample data."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from extractors.carriers import carrier_name, tracking_url
from mailhandler.cli.common import CliState, pass_state
from mailhandler.notifier import unsubscribe_link
from mailhandler.optout import unsubscribe_headers
from mailhandler.outbound import Envelope, build_message
from mailhandler.render import (
    Parcel,
    TemplateError,
    UpdateContext,
    available_languages,
    pick_language,
    render_update,
)
from mailhandler.shops import ShopError, get_shop
from mailhandler.store.models import UpdateType

SAMPLE_CARRIER = "dhl_paket"
SAMPLE_NUMBER = "00340434161094042557"


@click.command()
@click.argument("update", type=click.Choice([u.value for u in UpdateType]))
@click.option(
    "--shop",
    "shop_slug",
    required=True,
    help="The shop whose name and branding to use.",
)
@click.option("--language", default=None, help="Language code; default: the shop's.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["eml", "html", "text"]),
    default="eml",
    show_default=True,
    help="The whole email, or only its HTML or text part.",
)
@click.option(
    "--without-link",
    is_flag=True,
    help="Render as for a carrier without a tracking link (an unknown one).",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write; default: standard output.",
)
@pass_state
def preview(
    state: CliState,
    update: str,
    shop_slug: str,
    language: str | None,
    output_format: str,
    without_link: bool,
    output: Path | None,
) -> None:
    """Render update UPDATE for shop SHOP with sample order data."""
    settings, engine = state.open()
    try:
        shop = get_shop(engine, shop_slug)
    except ShopError as error:
        raise click.ClickException(str(error)) from error
    if language is not None and language.lower() not in available_languages():
        raise click.ClickException(
            f"no words for language {language!r}: use one of "
            f"{', '.join(available_languages())}"
        )
    chosen = pick_language(language, shop.language)
    # Notification id 0 exists nowhere, so the sample opt-out link opts
    # out no one.
    unsubscribe = unsubscribe_headers(settings, 0)
    context = UpdateContext(
        shop_name=shop.name,
        brand_color=shop.brand_color,
        logo_url=shop.logo_url,
        order_number="10045",
        customer_name="Chris Customer",
        parcels=[
            Parcel(
                tracking_number=SAMPLE_NUMBER,
                carrier_name=None if without_link else carrier_name(SAMPLE_CARRIER),
                # Built as extraction builds a shipment's link, so that the
                # sample shows the link customers receive.
                tracking_url=None
                if without_link
                else tracking_url(SAMPLE_CARRIER, SAMPLE_NUMBER),
                location="Packstation 123, 53113 Bonn",
            )
        ],
        unsubscribe_url=unsubscribe_link(unsubscribe["List-Unsubscribe"]),
    )
    try:
        rendered = render_update(update, chosen, context)
    except TemplateError as error:
        raise click.ClickException(str(error)) from error
    if output_format == "html":
        data = rendered.html.encode()
    elif output_format == "text":
        data = rendered.text.encode()
    else:
        envelope = Envelope(
            sender_address=settings.sender_address,
            sender_name=shop.name,
            recipient_address="chris@example.com",
            recipient_name="Chris Customer",
            message_id=f"<bcctrack.preview.{update}@{settings.intake_domain}>",
            list_unsubscribe=unsubscribe["List-Unsubscribe"],
            list_unsubscribe_post=unsubscribe.get("List-Unsubscribe-Post"),
        )
        data = build_message(rendered, envelope).as_bytes()
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        try:
            output.write_bytes(data)
        except OSError as error:
            raise click.ClickException(
                f"cannot write {output}: {error.strerror}; give an --output path "
                "in an existing, writable folder"
            ) from error
        click.echo(f"{update} in {chosen} written to {output}", err=True)

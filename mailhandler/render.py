"""Rendering customer updates from the Jinja2 templates in ``templates/``.

Each update type has an HTML and a plain-text template. The words come from
``templates/i18n/<language>.toml``, so that adding a language needs no new
template. The HTML templates are autoescaped.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

import mailhandler

DEFAULT_LANGUAGE = "en"


class TemplateError(Exception):
    """A template or its words are missing or broken."""


def templates_dir() -> Path:
    """Return the templates folder of the installed package or the checkout.

    The wheel ships ``templates/`` inside the ``mailhandler`` package; an
    editable install reads it from the top of the checkout.
    """
    package_dir = Path(mailhandler.__file__).parent
    for candidate in (package_dir / "templates", package_dir.parent / "templates"):
        if (candidate / "i18n").is_dir():
            return candidate
    raise TemplateError(
        f"templates folder not found next to {package_dir}: reinstall bcctrack"
    )


class _Fields(dict[str, str]):
    def __missing__(self, key: str) -> str:
        raise TemplateError(f"unknown placeholder {{{key}}} in the update words")


def fill(text: str, **fields: str) -> str:
    """Fill the ``{placeholder}`` fields of one sentence of the update words."""
    return text.format_map(_Fields(fields))


@cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["fill"] = fill
    return environment


@cache
def _words(language: str) -> dict[str, Any]:
    path = templates_dir() / "i18n" / f"{language}.toml"
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise TemplateError(f"no words for language {language!r} in {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise TemplateError(f"invalid TOML in {path}: {error}") from error


def available_languages() -> list[str]:
    """Return the languages that have words for the customer updates."""
    return sorted(path.stem for path in (templates_dir() / "i18n").glob("*.toml"))


def pick_language(*preferred: str | None) -> str:
    """Return the first of ``preferred`` that has words, else English."""
    available = set(available_languages())
    for language in preferred:
        if language and language.lower() in available:
            return language.lower()
    return DEFAULT_LANGUAGE


@dataclass(frozen=True)
class RenderedUpdate:
    """A rendered customer update, ready to be put into an email."""

    subject: str
    text: str
    html: str
    language: str


@dataclass(frozen=True)
class Parcel:
    """One shipment as an update shows it."""

    tracking_number: str
    carrier_name: str | None
    tracking_url: str | None
    # Where the parcel is (a pickup point, say), as the carrier names it.
    location: str | None = None


@dataclass(frozen=True)
class UpdateContext:
    """The data one customer update shows: one order, one or more parcels."""

    shop_name: str
    brand_color: str
    logo_url: str | None
    order_number: str | None
    customer_name: str | None
    parcels: Sequence[Parcel]
    unsubscribe_url: str | None = None


def _carrier(parcels: Sequence[Parcel], words: dict[str, Any]) -> str:
    # Sentences name one carrier: the parcels' own when they share one.
    names = {parcel.carrier_name for parcel in parcels}
    name = names.pop() if len(names) == 1 else None
    return name or str(words["carrier_unknown"])


def _update_words(words: dict[str, Any], update: str, many: bool) -> dict[str, Any]:
    # An update of several parcels takes the sentences of its "many" table
    # in place of the ones about a single parcel.
    chosen = dict(words[update])
    plural = chosen.pop("many", {})
    if many:
        chosen.update(plural)
    return chosen


def render_update(update: str, language: str, context: UpdateContext) -> RenderedUpdate:
    """Render ``update`` in ``language`` with the data of ``context``.

    An update of one parcel shows its carrier, number and link beside the
    order number; an update of several lists the parcels one by one.
    """
    words = _words(language)
    if update not in words:
        raise TemplateError(f"no words for update {update!r} in language {language!r}")
    if not context.parcels:
        raise TemplateError(f"update {update!r} without a parcel")
    first = context.parcels[0]
    many = len(context.parcels) > 1
    fields = {
        "shop": context.shop_name,
        "order": context.order_number or "",
        "carrier": _carrier(context.parcels, words),
        "count": str(len(context.parcels)),
        "name": context.customer_name or "",
        "location": first.location or "",
    }
    greeting = (
        words["greeting"] if context.customer_name else words["greeting_anonymous"]
    )
    update_words = _update_words(words, update, many)
    try:
        subject = fill(update_words["subject"], **fields)
    except (KeyError, ValueError) as error:
        raise TemplateError(
            f"invalid subject of {update!r} in {language!r}: {error}"
        ) from error
    values: dict[str, Any] = {
        "shop": {
            "name": context.shop_name,
            "brand_color": context.brand_color,
            "logo_url": context.logo_url,
        },
        "order_number": context.order_number,
        "carrier_name": first.carrier_name,
        "tracking_number": first.tracking_number,
        "tracking_url": first.tracking_url,
        "unsubscribe_url": context.unsubscribe_url,
        "location": first.location,
        "parcels": list(context.parcels),
        "many": many,
        # Only the pickup notice shows where each parcel waits.
        "show_locations": update == "available_for_pickup",
        # The sentence about "the link below" needs a link for every parcel.
        "all_linked": all(parcel.tracking_url for parcel in context.parcels),
        "fields": fields,
        "greeting": greeting,
        "words": words,
        "update_words": update_words,
        "language": language,
        "subject": subject,
    }
    environment = _environment()
    try:
        text = environment.get_template(f"{update}.txt.j2").render(values)
        html = environment.get_template(f"{update}.html.j2").render(values)
    except jinja2.TemplateError as error:
        raise TemplateError(
            f"cannot render {update!r} in {language!r}: {error}"
        ) from error
    return RenderedUpdate(
        subject=" ".join(subject.split()), text=text, html=html, language=language
    )

"""Every update type renders in every language, with the shop's branding."""

from __future__ import annotations

import tomllib
from dataclasses import replace

import pytest

from mailhandler.render import (
    Parcel,
    UpdateContext,
    available_languages,
    render_update,
    templates_dir,
)
from mailhandler.store.models import UpdateType

LANGUAGES = ["en", "de", "fr", "nl", "es", "it"]


# How each language's words name a link; none may appear without one.
LINK_WORDS = {
    "en": "link",
    "de": "link",
    "fr": "lien",
    "nl": "link",
    "es": "enlace",
    "it": "link",
}
URL = "https://track.example/00340434161094042557"


def _context(
    location: str | None = "Packstation 7, Bonn", tracking_url: str | None = URL
) -> UpdateContext:
    return UpdateContext(
        shop_name="Acme <Outdoor>",
        brand_color="#0a7f3f",
        logo_url="https://acme.example/logo.png",
        order_number="10045",
        customer_name="Chris",
        parcels=[
            Parcel(
                tracking_number="00340434161094042557",
                carrier_name="DHL Paket",
                tracking_url=tracking_url,
                location=location,
            )
        ],
        unsubscribe_url="mailto:optout.1.abcdefghijklmnop@bcc.test",
    )


def test_six_languages_available() -> None:
    assert set(LANGUAGES) <= set(available_languages())


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("update", [u.value for u in UpdateType])
def test_update_renders(update: str, language: str) -> None:
    rendered = render_update(update, language, _context())
    assert "10045" in rendered.subject
    assert "Acme <Outdoor>" in rendered.subject
    assert "Acme &lt;Outdoor&gt;" in rendered.html
    assert "Acme <Outdoor>" in rendered.text
    assert "#0a7f3f" in rendered.html
    assert 'src="https://acme.example/logo.png"' in rendered.html
    assert "00340434161094042557" in rendered.text
    assert "mailto:optout.1.abcdefghijklmnop@bcc.test" in rendered.text
    assert f'lang="{language}"' in rendered.html
    assert "{" not in rendered.text


def test_subjects_differ_per_update() -> None:
    for language in LANGUAGES:
        subjects = {
            render_update(u.value, language, _context()).subject for u in UpdateType
        }
        assert len(subjects) == len(UpdateType)


def test_pickup_location_shown_only_when_known() -> None:
    with_place = render_update("available_for_pickup", "nl", _context())
    without = render_update("available_for_pickup", "nl", _context(location=None))
    assert "Afhaalpunt: Packstation 7, Bonn" in with_place.text
    assert "Afhaalpunt" not in without.text


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("update", [u.value for u in UpdateType])
def test_update_without_link_mentions_none(update: str, language: str) -> None:
    rendered = render_update(update, language, _context(tracking_url=None))
    word = LINK_WORDS[language]
    assert word not in rendered.text.lower()
    assert word not in rendered.html.lower()
    assert "href=" not in rendered.html.replace('href="mailto:', "")
    assert "00340434161094042557" in rendered.text


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("update", ["shipped", "delayed"])
def test_update_with_link_points_to_it(update: str, language: str) -> None:
    with_link = render_update(update, language, _context())
    without = render_update(update, language, _context(tracking_url=None))
    word = LINK_WORDS[language]
    assert word in with_link.text.lower()
    assert f'href="{URL}"' in with_link.html
    assert URL in with_link.text
    assert with_link.text != without.text


def _parcels(tracking_url: str | None = URL) -> list[Parcel]:
    return [
        Parcel("00340434161094042557", "DHL Paket", tracking_url, "Packstation 7"),
        Parcel("77116398", "Mondial Relay", None, "Relais Lille"),
    ]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("update", [u.value for u in UpdateType])
def test_update_lists_several_parcels(update: str, language: str) -> None:
    single = render_update(update, language, _context())
    context = replace(_context(), parcels=_parcels())
    rendered = render_update(update, language, context)
    words = tomllib.loads(
        (templates_dir() / "i18n" / f"{language}.toml").read_text("utf-8")
    )
    assert rendered.subject == single.subject
    assert words["parcels"] in rendered.text
    assert words["parcels"] in rendered.html
    for index, parcel in enumerate(_parcels(), start=1):
        heading = words["parcel_of"].format(index=index, count=2)
        assert heading in rendered.text
        assert parcel.tracking_number in rendered.text
        assert parcel.tracking_number in rendered.html
        assert f"{parcel.carrier_name}" in rendered.text
    assert rendered.text.count(URL) == 1
    assert rendered.html.count(f'href="{URL}"') == 1
    body = words[update]["many"]["body"].format(shop="Acme <Outdoor>", count=2)
    assert body in rendered.text
    assert "{" not in rendered.text
    assert ("Relais Lille" in rendered.text) == (update == "available_for_pickup")


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("update", [u.value for u in UpdateType])
def test_parcels_without_link_mention_none(update: str, language: str) -> None:
    context = replace(_context(), parcels=_parcels(tracking_url=None))
    rendered = render_update(update, language, context)
    word = LINK_WORDS[language]
    assert word not in rendered.text.lower()
    assert word not in rendered.html.lower()
    assert "href=" not in rendered.html.replace('href="mailto:', "")

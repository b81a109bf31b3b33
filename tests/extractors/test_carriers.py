"""Carrier definitions: their examples, overlaps and check-digit algorithms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extractors.carriers import (
    CheckResult,
    carrier_name,
    carriers,
    match_formats,
    match_link,
    tracking_url,
)

DESIGN_SLUGS = [
    "ups", "usps", "fedex", "dhl_express", "dhl_paket", "dhl_ecommerce", "dpd",
    "gls", "hermes", "evri", "royal_mail", "parcelforce", "postnl", "bpost",
    "colissimo", "chronopost", "correos", "poste_italiane", "sda", "brt",
    "inpost", "poczta_polska", "postnord", "swiss_post", "austrian_post", "ctt",
    "ceska_posta", "canada_post", "australia_post", "amazon_logistics",
    "ontrac", "lasership", "purolator",
]  # fmt: skip

# tracking_number_data courier files and the bcctrack carriers they cover.
COURIER_FILES = {
    "ups.json": ["ups"],
    "usps.json": ["usps"],
    "fedex.json": ["fedex"],
    "dhl.json": ["dhl_express"],
    "dpd.json": ["dpd"],
    "canadapost.json": ["canada_post"],
    "ontrac.json": ["ontrac"],
    "purolator.json": ["purolator"],
    "s10.json": [
        "usps", "royal_mail", "dhl_paket", "postnl", "bpost", "colissimo",
        "correos", "poste_italiane", "poczta_polska", "postnord", "swiss_post",
        "austrian_post", "ctt", "ceska_posta", "canada_post", "australia_post",
    ],
}  # fmt: skip

# Example numbers that fit formats of more than one carrier. A new overlap
# fails the overlap test until it is reviewed and listed here.
# SSCC-18 numbers (DHL Paket, PostNord) and USPS 20-digit numbers share the
# GS1 check digit; the SSCC formats are distinctive through their company
# prefix, so they win where the email names no carrier. Chronopost uses La
# Poste's S10 numbers.
KNOWN_OVERLAPS = {
    "00340434554012921360": {"dhl_paket", "usps"},
    "00340434784586062057": {"dhl_paket", "usps"},
    "00340434999999999993": {"dhl_paket", "usps"},
    "00370712000000000019": {"postnord", "usps"},
    "00370712552168899405": {"postnord", "usps"},
    "RR123456785FR": {"chronopost", "colissimo"},
    "XY844284400FR": {"chronopost", "colissimo"},
}


def test_every_design_carrier_defined() -> None:
    assert set(DESIGN_SLUGS) <= set(carriers())


@pytest.mark.parametrize("slug", sorted(carriers()))
def test_carrier_definition_complete(slug: str) -> None:
    carrier = carriers()[slug]
    assert carrier.name
    assert carrier.names
    if slug == "other":
        # Carriers that are named but not tracked: no link, no formats.
        assert not carrier.tracking_url
        assert not carrier.formats
        return
    assert "{number}" in carrier.tracking_url
    assert carrier.links
    assert carrier.formats


def test_format_examples() -> None:
    wrong = []
    for carrier in carriers().values():
        for number_format in carrier.formats:
            for number in number_format.valid:
                fits = number_format.pattern.fullmatch(number)
                if not fits or number_format.check_number(number) == CheckResult.FAILED:
                    wrong.append(f"{number_format.name}: valid {number} rejected")
            for number in number_format.invalid:
                fits = number_format.pattern.fullmatch(number)
                if fits and number_format.check_number(number) != CheckResult.FAILED:
                    wrong.append(f"{number_format.name}: invalid {number} accepted")
    assert wrong == []


def test_examples_matching_several_carriers() -> None:
    overlaps = {}
    for carrier in carriers().values():
        for number_format in carrier.formats:
            for number in number_format.valid:
                passing = {
                    m.carrier
                    for m in match_formats(number)
                    if m.check == CheckResult.PASSED
                    or (m.check == CheckResult.NONE and m.format.distinctive)
                }
                if len(passing) > 1:
                    overlaps[number] = passing
    print("\nexample numbers that more than one carrier accepts:")
    for number, slugs in sorted(overlaps.items()):
        print(f"  {number}: {', '.join(sorted(slugs))}")
    assert overlaps == KNOWN_OVERLAPS


def _courier_numbers(path: Path) -> list[tuple[str, bool]]:
    data = json.loads(path.read_text())
    numbers = []
    for entry in data["tracking_numbers"]:
        if not entry.get("validation", {}).get("checksum"):
            continue
        tests = entry.get("test_numbers", {})
        numbers += [("".join(n.split()), True) for n in tests.get("valid", [])]
        numbers += [("".join(n.split()), False) for n in tests.get("invalid", [])]
    return numbers


@pytest.mark.parametrize("courier_file", sorted(COURIER_FILES))
def test_check_digits_agree_with_tracking_number_data(
    corpus_dir: Path, courier_file: str
) -> None:
    slugs = set(COURIER_FILES[courier_file])
    disagreements = []
    checked = 0
    for number, valid in _courier_numbers(
        corpus_dir / "tracking_number_data" / courier_file
    ):
        results = [m.check for m in match_formats(number) if m.carrier in slugs]
        checkable = [r for r in results if r != CheckResult.NONE]
        if not checkable:
            continue
        checked += 1
        passed = CheckResult.PASSED in checkable
        if passed != valid:
            disagreements.append(
                f"{number}: expected {'valid' if valid else 'invalid'}"
            )
    assert checked > 0
    assert disagreements == []


def test_carrier_name_and_link() -> None:
    assert carrier_name("dhl_paket") == "DHL Paket"
    assert carrier_name("other") is None
    assert carrier_name(None) is None
    assert tracking_url("ups", "1Z999AA10123456784") == (
        "https://www.ups.com/track?tracknum=1Z999AA10123456784"
    )
    assert tracking_url("unknown", "1") is None


def test_link_templates_recognised() -> None:
    for carrier in carriers().values():
        if not carrier.formats:
            continue
        number = carrier.formats[0].valid[0]
        url = tracking_url(carrier.slug, number)
        assert url is not None
        bare = url.split("://", 1)[1]
        found = [(slug, raw.upper()) for slug, raw in match_link(bare)]
        assert (carrier.slug, number) in found, url

"""Shops: registration, BCC addresses and recipient lookup, on both stores."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from mailhandler.shops import (
    ShopError,
    add_shop,
    bcc_address,
    find_recipient,
    get_shop,
    list_shops,
)


def test_add_shop_stores_normalized_domains(engine: Engine) -> None:
    shop = add_shop(engine, "acme", "Acme", ["Mail.ACME.example.", "acme.example"])
    assert shop.sender_domains == ["acme.example", "mail.acme.example"]
    assert get_shop(engine, "acme").name == "Acme"


def test_bcc_address_finds_its_shop(engine: Engine) -> None:
    shop = add_shop(engine, "acme", "Acme", ["acme.example"], language="de")
    address = bcc_address(shop, "bcc.example")
    assert address.startswith("acme-")
    assert address.endswith("@bcc.example")
    recipient = find_recipient(engine, address, "bcc.example")
    assert recipient is not None
    assert recipient.slug == "acme"
    assert find_recipient(engine, address.upper(), "BCC.example") is not None


@pytest.mark.parametrize(
    "address",
    [
        "acme-wrongtoken@bcc.example",
        "acme@bcc.example",
        "nobody-abc@bcc.example",
        "",
        "no-at-sign",
        "acme-\u00e9\u00e9@bcc.example",
    ],
)
def test_unknown_addresses_find_nothing(engine: Engine, address: str) -> None:
    shop = add_shop(engine, "acme", "Acme", ["acme.example"])
    assert find_recipient(engine, address, "bcc.example") is None
    other_domain = bcc_address(shop, "elsewhere.example")
    assert find_recipient(engine, other_domain, "bcc.example") is None


def test_duplicate_slug_rejected(engine: Engine) -> None:
    add_shop(engine, "acme", "Acme", ["acme.example"])
    with pytest.raises(ShopError, match="already exists"):
        add_shop(engine, "acme", "Acme again", ["acme.example"])
    assert [shop.slug for shop in list_shops(engine)] == ["acme"]


@pytest.mark.parametrize(
    ("slug", "domains", "language", "message"),
    [
        ("Acme", ["acme.example"], "en", "invalid slug"),
        ("a" * 48, ["acme.example"], "en", "invalid slug"),
        ("acme-", ["acme.example"], "en", "invalid slug"),
        ("acme", [], "en", "missing sender domain"),
        ("acme", ["not a domain"], "en", "invalid sender domain"),
        ("acme", ["acme.example"], "german", "invalid language"),
    ],
)
def test_invalid_shop_values_rejected(
    engine: Engine, slug: str, domains: list[str], language: str, message: str
) -> None:
    with pytest.raises(ShopError, match=message):
        add_shop(engine, slug, "Acme", domains, language)
    assert list_shops(engine) == []


def test_tokens_differ_between_shops(engine: Engine) -> None:
    first = add_shop(engine, "one", "One", ["one.example"])
    second = add_shop(engine, "two", "Two", ["two.example"])
    assert first.token != second.token
    assert len(first.token) == 16


def test_name_with_line_break_rejected(engine: Engine) -> None:
    with pytest.raises(ShopError, match="line breaks"):
        add_shop(engine, "acme", "Acme\r\nBcc: x@example.com", ["acme.example"])


def test_longest_slug_fits_smtp_local_part(engine: Engine) -> None:
    shop = add_shop(engine, "a" * 47, "Long", ["long.example"])
    local_part = bcc_address(shop, "bcc.example").split("@")[0]
    assert len(local_part) == 64

"""Shops: registration, BCC addresses and recipient lookup."""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from mailhandler.store import transaction
from mailhandler.store.models import Shop

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
DOMAIN_PATTERN = re.compile(
    r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$"
)
LANGUAGE_PATTERN = re.compile(r"^[a-z]{2}$")

# 16 characters of a 32-letter alphabet: 80 random bits, and no letters that
# a person copying the address could confuse.
TOKEN_ALPHABET = "".join(
    sorted(set(string.ascii_lowercase + string.digits) - set("01lo"))
)
TOKEN_LENGTH = 16


class ShopError(Exception):
    """A shop cannot be created or found; the message names the invalid value."""


@dataclass(frozen=True)
class Recipient:
    """A shop matched from a BCC address."""

    shop_id: int
    slug: str


def new_token() -> str:
    """Return a fresh random address token."""
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def normalize_domain(domain: str) -> str:
    """Return ``domain`` lower case, without a trailing dot, IDNA-encoded."""
    value = domain.strip().lower().rstrip(".")
    try:
        value = value.encode("idna").decode("ascii")
    except UnicodeError as error:
        raise ShopError(f"invalid sender domain {domain!r}: {error}") from error
    if not DOMAIN_PATTERN.match(value):
        raise ShopError(
            f"invalid sender domain {domain!r}: expected a name such as shop.example"
        )
    return value


def bcc_address(shop: Shop, intake_domain: str) -> str:
    """Return the BCC address of ``shop``."""
    return f"{shop.slug}-{shop.token}@{intake_domain}"


def add_shop(
    engine: Engine,
    slug: str,
    name: str,
    sender_domains: list[str],
    language: str = "en",
) -> Shop:
    """Store a new shop with a fresh token and return it."""
    if not SLUG_PATTERN.match(slug):
        raise ShopError(
            f"invalid slug {slug!r}: use 1 to 64 lower-case letters, digits and "
            "inner hyphens"
        )
    if not name.strip():
        raise ShopError("invalid name: the shop name is empty")
    if not sender_domains:
        raise ShopError("missing sender domain: give at least one --sender-domain")
    language = language.strip().lower()
    if not LANGUAGE_PATTERN.match(language):
        raise ShopError(
            f"invalid language {language!r}: use an ISO 639-1 code such as en or de"
        )
    domains = sorted({normalize_domain(domain) for domain in sender_domains})
    shop = Shop(
        slug=slug,
        name=name.strip(),
        token=new_token(),
        sender_domains=domains,
        language=language,
    )
    try:
        with transaction(engine) as session:
            session.add(shop)
    except IntegrityError as error:
        raise ShopError(f"shop {slug!r} already exists") from error
    return shop


def list_shops(engine: Engine) -> list[Shop]:
    """Return every shop, ordered by slug."""
    with transaction(engine) as session:
        return list(session.scalars(select(Shop).order_by(col(Shop.slug))))


def get_shop(engine: Engine, slug: str) -> Shop:
    """Return the shop with ``slug``; raise ShopError if there is none."""
    with transaction(engine) as session:
        shop = session.scalars(select(Shop).where(col(Shop.slug) == slug)).first()
    if shop is None:
        raise ShopError(f"shop {slug!r} not found: see 'bcctrack shop list'")
    return shop


def find_recipient(
    engine: Engine, address: str, intake_domain: str
) -> Recipient | None:
    """Return the shop whose BCC address is ``address``, or None."""
    local, at, domain = address.strip().rpartition("@")
    if not at or domain.lower().rstrip(".") != intake_domain.lower():
        return None
    slug, dash, token = local.lower().rpartition("-")
    if not dash or not slug:
        return None
    with transaction(engine) as session:
        shop = session.scalars(select(Shop).where(col(Shop.slug) == slug)).first()
    if shop is None or shop.id is None:
        return None
    if not secrets.compare_digest(shop.token.encode(), token.encode()):
        return None
    return Recipient(shop_id=shop.id, slug=shop.slug)

"""Shops: registration, changes, BCC addresses and recipient lookup."""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from mailhandler.store import transaction
from mailhandler.store.models import (
    CarrierCredential,
    DriftAlarm,
    InboundMessage,
    Notification,
    NotificationState,
    OptOut,
    Order,
    PollState,
    Shipment,
    ShipmentPoll,
    ShipmentStatus,
    Shop,
    TrackingEvent,
    utcnow,
)

# A slug of at most 47 characters keeps "<slug>-<16-character token>" within
# the 64 octets SMTP allows for a local part.
SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,45}[a-z0-9])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
DOMAIN_PATTERN = re.compile(
    r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$"
)
LANGUAGE_PATTERN = re.compile(r"^[a-z]{2}$")
COLOR_PATTERN = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
SENDER_POLICIES = ("domain", "dkim")
UNVERIFIED_POLICIES = ("quarantine", "reject")
_FINAL_STATUSES = (
    ShipmentStatus.DELIVERED,
    ShipmentStatus.RETURNED,
    ShipmentStatus.EXPIRED,
)

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
    """A shop matched from a BCC address, with what intake needs to know."""

    shop_id: int
    slug: str
    sender_domains: tuple[str, ...] = ()
    sender_policy: str = "domain"
    unverified_policy: str = "quarantine"


@dataclass(frozen=True)
class ShopChanges:
    """The values ``update_shop`` changes; None leaves a value as it is."""

    name: str | None = None
    add_domains: tuple[str, ...] = ()
    remove_domains: tuple[str, ...] = ()
    language: str | None = None
    brand_color: str | None = None
    # An empty string clears the logo or the shop's own relay.
    logo_url: str | None = None
    outbound: str | None = None
    sender_policy: str | None = None
    unverified_policy: str | None = None


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


def _check_name(name: str) -> None:
    if not name.strip():
        raise ShopError("invalid name: the shop name is empty")
    if _CONTROL.search(name):
        raise ShopError(
            f"invalid name {name!r}: line breaks and control characters are not allowed"
        )


def _check_language(language: str) -> str:
    value = language.strip().lower()
    if not LANGUAGE_PATTERN.match(value):
        raise ShopError(
            f"invalid language {language!r}: use an ISO 639-1 code such as en or de"
        )
    return value


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ShopError(f"invalid {name} {value!r}: use {' or '.join(choices)}")
    return value


def _check_outbound(value: str) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme != "smtp" or not parts.hostname:
        raise ShopError(
            f"invalid outbound {value!r}: use smtp://host:port, or '' for the default"
        )
    return value


def _check_logo(value: str) -> str | None:
    if not value:
        return None
    if urlsplit(value).scheme != "https":
        raise ShopError(f"invalid logo URL {value!r}: use an https:// address")
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
            f"invalid slug {slug!r}: use 1 to 47 lower-case letters, digits and "
            "inner hyphens"
        )
    _check_name(name)
    if not sender_domains:
        raise ShopError("missing sender domain: give at least one --sender-domain")
    shop = Shop(
        slug=slug,
        name=name.strip(),
        token=new_token(),
        sender_domains=sorted({normalize_domain(d) for d in sender_domains}),
        language=_check_language(language),
    )
    try:
        with transaction(engine) as session:
            session.add(shop)
    except IntegrityError as error:
        existing = get_shop(engine, slug)
        if existing.removed_at is not None:
            raise ShopError(
                f"shop {slug!r} exists but was removed: 'bcctrack shop restore "
                f"{slug}' brings it back"
            ) from error
        raise ShopError(f"shop {slug!r} already exists") from error
    return shop


def list_shops(engine: Engine, include_removed: bool = False) -> list[Shop]:
    """Return the shops ordered by slug, without removed ones unless asked."""
    query = select(Shop).order_by(col(Shop.slug))
    if not include_removed:
        query = query.where(col(Shop.removed_at).is_(None))
    with transaction(engine) as session:
        return list(session.scalars(query))


def _load(session: Session, slug: str) -> Shop:
    shop = session.scalars(select(Shop).where(col(Shop.slug) == slug)).first()
    if shop is None:
        raise ShopError(f"shop {slug!r} not found: see 'bcctrack shop list'")
    return shop


def get_shop(engine: Engine, slug: str) -> Shop:
    """Return the shop with ``slug``; raise ShopError if there is none."""
    with transaction(engine) as session:
        return _load(session, slug)


def update_shop(engine: Engine, slug: str, changes: ShopChanges) -> Shop:
    """Apply ``changes`` to the shop and return it."""
    with transaction(engine) as session:
        shop = _load(session, slug)
        if changes.name is not None:
            _check_name(changes.name)
            shop.name = changes.name.strip()
        domains = set(shop.sender_domains)
        domains |= {normalize_domain(d) for d in changes.add_domains}
        for domain in changes.remove_domains:
            normalized = normalize_domain(domain)
            if normalized not in domains:
                raise ShopError(
                    f"sender domain {normalized!r} not found; the shop has "
                    f"{', '.join(sorted(domains))}"
                )
            domains.discard(normalized)
        if not domains:
            raise ShopError("a shop needs at least one sender domain: add one first")
        shop.sender_domains = sorted(domains)
        if changes.language is not None:
            shop.language = _check_language(changes.language)
        if changes.brand_color is not None:
            if not COLOR_PATTERN.match(changes.brand_color):
                raise ShopError(
                    f"invalid brand colour {changes.brand_color!r}: use #rrggbb"
                )
            shop.brand_color = changes.brand_color
        if changes.logo_url is not None:
            shop.logo_url = _check_logo(changes.logo_url)
        if changes.outbound is not None:
            shop.outbound = _check_outbound(changes.outbound)
        if changes.sender_policy is not None:
            shop.sender_policy = _check_choice(
                "sender policy", changes.sender_policy, SENDER_POLICIES
            )
        if changes.unverified_policy is not None:
            shop.unverified_policy = _check_choice(
                "unverified policy", changes.unverified_policy, UNVERIFIED_POLICIES
            )
        session.add(shop)
        return shop


def rotate_token(engine: Engine, slug: str, grace: timedelta) -> Shop:
    """Give the shop a new token; the old address works for ``grace`` more."""
    if grace < timedelta(0):
        raise ShopError("invalid grace period: it cannot be negative")
    with transaction(engine) as session:
        shop = _load(session, slug)
        now = utcnow()
        # Earlier rotations keep their own grace periods; expired entries go.
        retired = [
            entry
            for entry in shop.retired_tokens
            if datetime.fromisoformat(entry["expires_at"]) > now
        ]
        if grace:
            retired.append(
                {"token": shop.token, "expires_at": (now + grace).isoformat()}
            )
        shop.retired_tokens = retired
        shop.token = new_token()
        session.add(shop)
        return shop


def retired_addresses(shop: Shop, intake_domain: str) -> list[tuple[str, datetime]]:
    """Return the shop's old addresses that still work, with their end."""
    now = utcnow()
    found = []
    for entry in shop.retired_tokens:
        expires = datetime.fromisoformat(entry["expires_at"])
        if expires > now:
            found.append((f"{shop.slug}-{entry['token']}@{intake_domain}", expires))
    return found


def remove_shop(engine: Engine, slug: str, purge: bool = False) -> None:
    """Stop the shop: no mail accepted, no polls, no updates.

    The shop's data stays and ``restore_shop`` brings it back; with ``purge``
    the data is deleted.
    """
    with transaction(engine) as session:
        shop = _load(session, slug)
        if not purge:
            shop.removed_at = utcnow()
            session.add(shop)
            _stop_activity(session, shop)
            return
        shop_id = shop.id
        shipments = select(col(Shipment.id)).where(col(Shipment.shop_id) == shop_id)
        for by_shipment in (TrackingEvent, ShipmentPoll):
            session.execute(
                delete(by_shipment).where(col(by_shipment.shipment_id).in_(shipments))
            )
        for model in (
            Notification,
            Shipment,
            Order,
            DriftAlarm,
            InboundMessage,
            OptOut,
            CarrierCredential,
        ):
            session.execute(delete(model).where(col(model.shop_id) == shop_id))
        session.delete(shop)


def _stop_activity(session: Session, shop: Shop) -> None:
    shipments = select(col(Shipment.id)).where(col(Shipment.shop_id) == shop.id)
    session.execute(
        update(ShipmentPoll)
        .where(col(ShipmentPoll.shipment_id).in_(shipments))
        .values(state=PollState.STOPPED)
    )
    session.execute(
        update(Notification)
        .where(
            col(Notification.shop_id) == shop.id,
            col(Notification.state) == NotificationState.PENDING,
        )
        .values(state=NotificationState.SUPPRESSED, reason="shop removed")
    )


def restore_shop(engine: Engine, slug: str) -> Shop:
    """Accept a removed shop's mail again; its shipments are polled again."""
    with transaction(engine) as session:
        shop = _load(session, slug)
        if shop.removed_at is None:
            raise ShopError(f"shop {slug!r} is not removed")
        shop.removed_at = None
        session.add(shop)
        shipments = select(col(Shipment.id)).where(
            col(Shipment.shop_id) == shop.id,
            col(Shipment.status).not_in(_FINAL_STATUSES),
            col(Shipment.withdrawn_at).is_(None),
        )
        session.execute(
            update(ShipmentPoll)
            .where(col(ShipmentPoll.shipment_id).in_(shipments))
            .values(state=PollState.ACTIVE, next_attempt_at=utcnow())
        )
        return shop


def _token_matches(shop: Shop, token: str) -> bool:
    given = token.encode()
    if secrets.compare_digest(shop.token.encode(), given):
        return True
    # Old addresses of rotated tokens work until their grace periods end.
    now = utcnow()
    matched = False
    for entry in shop.retired_tokens:
        if datetime.fromisoformat(entry["expires_at"]) <= now:
            continue
        matched |= secrets.compare_digest(entry["token"].encode(), given)
    return matched


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
    if shop is None or shop.id is None or shop.removed_at is not None:
        return None
    if not _token_matches(shop, token):
        return None
    return Recipient(
        shop_id=shop.id,
        slug=shop.slug,
        sender_domains=tuple(shop.sender_domains),
        sender_policy=shop.sender_policy,
        unverified_policy=shop.unverified_policy,
    )

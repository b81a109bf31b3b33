"""Opt-out: addresses that get no more customer updates from a shop.

Every update carries a ``List-Unsubscribe`` header (RFC 2369) with a mailto:
address at the intake domain, ``optout.<notification id>.<signature>``, and,
when ``unsubscribe_base_url`` is set, an https link with the same token for
one-click opt-out (RFC 8058, announced by ``List-Unsubscribe-Post``), which
``mailhandler.web`` serves. The signature is an HMAC-SHA256 of the
notification id, so an address can be opted out only with a token from an
update sent to it. A token opts out the notification's recipient for the
notification's shop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from mailhandler.settings import Settings
from mailhandler.store import transaction
from mailhandler.store.models import (
    Notification,
    NotificationState,
    OptOut,
    Shop,
    utcnow,
)

log = logging.getLogger("bcctrack.notify")

KEY_FILE = "unsubscribe.key"
ADDRESS_PREFIX = "optout"
REASON = "recipient opted out"
# 16 base32 characters: 80 bits of the HMAC, lower case because mail
# systems may change the case of a local part.
_SIGNATURE_LENGTH = 16
_TOKEN = re.compile(r"^(\d{1,18})\.([a-z2-7]{16})$")
_SOURCES = frozenset({"mailto", "url", "admin"})


class OptOutError(Exception):
    """An opt-out cannot be recorded; the message names the invalid value."""


@dataclass(frozen=True)
class OptOutEntry:
    """One opted-out address of one shop."""

    shop: str
    address: str
    source: str
    created_at: str


def normalize_address(address: str) -> str:
    """Return ``address`` stripped and in lower case, or raise OptOutError."""
    value = address.strip().lower()
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or any(ch.isspace() for ch in value):
        raise OptOutError(f"invalid address {address!r}: expected name@domain")
    return value


def signing_key(settings: Settings) -> bytes:
    """Return the key that signs opt-out tokens.

    The ``unsubscribe_secret`` setting wins; otherwise the key is read from
    the data folder, where the first process to need one creates it.
    """
    configured = settings.unsubscribe_secret.get_secret_value()
    if configured:
        return configured.encode()
    path = settings.data_dir / KEY_FILE
    if not path.exists():
        _create_key(path)
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 32:
        raise OptOutError(f"opt-out key in {path} is too short: delete the file")
    return key.encode()


def _create_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: when two processes start together, one key wins.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(secrets.token_hex(32) + "\n")


def _signature(key: bytes, notification_id: int) -> str:
    digest = hmac.new(key, f"optout:{notification_id}".encode(), hashlib.sha256)
    encoded = base64.b32encode(digest.digest()).decode("ascii").lower()
    return encoded[:_SIGNATURE_LENGTH]


def make_token(key: bytes, notification_id: int) -> str:
    """Return the signed opt-out token of a notification."""
    return f"{notification_id}.{_signature(key, notification_id)}"


def verify_token(key: bytes, token: str) -> int | None:
    """Return the notification id of a valid token, or None."""
    match = _TOKEN.match(token.strip().lower())
    if match is None:
        return None
    notification_id = int(match.group(1))
    expected = _signature(key, notification_id)
    if not hmac.compare_digest(expected, match.group(2)):
        return None
    return notification_id


def mailto_address(key: bytes, notification_id: int, intake_domain: str) -> str:
    """Return the opt-out address of a notification at the intake domain."""
    token = make_token(key, notification_id)
    return f"{ADDRESS_PREFIX}.{token}@{intake_domain}"


def token_from_address(address: str, intake_domain: str) -> str | None:
    """Return the token of an opt-out address, or None for other addresses."""
    local, at, domain = address.strip().strip("<>").lower().rpartition("@")
    if not at or domain.rstrip(".") != intake_domain.lower():
        return None
    prefix, dot, token = local.partition(".")
    if prefix != ADDRESS_PREFIX or not dot:
        return None
    return token


def one_click_url(base_url: str, token: str) -> str:
    """Return ``base_url`` with the token added as the ``token`` parameter."""
    parts = urlsplit(base_url)
    query = f"{parts.query}&" if parts.query else ""
    query += urlencode({"token": token})
    return urlunsplit(parts._replace(query=query))


def unsubscribe_headers(settings: Settings, notification_id: int) -> dict[str, str]:
    """Return the List-Unsubscribe headers of one notification.

    The values contain only the intake domain, the base URL setting and the
    token, so no customer or shop data can reach them.
    """
    key = signing_key(settings)
    address = mailto_address(key, notification_id, settings.intake_domain)
    links = [f"<mailto:{address}?subject=unsubscribe>"]
    headers = {}
    if settings.unsubscribe_base_url:
        url = one_click_url(
            settings.unsubscribe_base_url, make_token(key, notification_id)
        )
        links.append(f"<{url}>")
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    headers["List-Unsubscribe"] = ", ".join(links)
    return headers


def is_opted_out(session: Session, shop_id: int, address: str) -> bool:
    """Tell whether ``address`` opted out of the shop's updates."""
    found = session.scalars(
        select(col(OptOut.id)).where(
            col(OptOut.shop_id) == shop_id,
            col(OptOut.address) == address.strip().lower(),
        )
    ).first()
    return found is not None


def _insert(session: Session, shop_id: int, address: str, source: str) -> bool:
    if source not in _SOURCES:
        raise OptOutError(f"invalid source {source!r}: use {', '.join(_SOURCES)}")
    bind = session.get_bind()
    insert_ = postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert
    inserted = session.scalars(
        insert_(OptOut)
        .values(shop_id=shop_id, address=address, source=source, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["shop_id", "address"])
        .returning(col(OptOut.id))
    ).first()
    # Updates already queued for the address stop too.
    session.execute(
        update(Notification)
        .where(
            col(Notification.shop_id) == shop_id,
            func.lower(col(Notification.recipient)) == address,
            col(Notification.state) == NotificationState.PENDING,
            col(Notification.lease_owner).is_(None),
        )
        .values(state=NotificationState.SUPPRESSED, reason=REASON)
    )
    return inserted is not None


def add_opt_out(engine: Engine, shop_id: int, address: str, source: str) -> bool:
    """Record an opt-out; return False when the address had opted out before."""
    normalized = normalize_address(address)
    with transaction(engine) as session:
        return _insert(session, shop_id, normalized, source)


def _notification_of_token(
    session: Session, settings: Settings, token: str
) -> Notification | None:
    """Return the notification a valid token names, if it has a recipient."""
    notification_id = verify_token(signing_key(settings), token)
    if notification_id is None:
        return None
    notification = session.get(Notification, notification_id)
    if notification is None or not notification.recipient:
        return None
    return notification


def opt_out_by_token(
    engine: Engine, settings: Settings, token: str, source: str
) -> bool:
    """Opt out the recipient of the notification a token names.

    Returns False when the token is invalid or names no notification. The
    one-click web endpoint and the mailto: intake both end here.
    """
    with transaction(engine) as session:
        notification = _notification_of_token(session, settings, token)
        if notification is None:
            return False
        address = notification.recipient.strip().lower()
        added = _insert(session, notification.shop_id, address, source)
    log.info(
        "notification %s: recipient opted out of shop %s by %s%s",
        notification.id,
        notification.shop_id,
        source,
        "" if added else " (again)",
    )
    return True


def shop_name_of_token(engine: Engine, settings: Settings, token: str) -> str | None:
    """Return the name of the shop whose update a token came with.

    Returns None in the cases where opt_out_by_token returns False: the token
    is invalid or names no notification. Nothing is recorded.
    """
    with transaction(engine) as session:
        notification = _notification_of_token(session, settings, token)
        if notification is None:
            return None
        shop = session.get(Shop, notification.shop_id)
        return shop.name if shop is not None else None


def record_mailto_opt_out(engine: Engine, settings: Settings, address: str) -> bool:
    """Record the opt-out an email to an opt-out address asks for.

    Returns False for an address that is not a valid opt-out address, which
    the intake then rejects like any unknown recipient.
    """
    token = token_from_address(address, settings.intake_domain)
    if token is None:
        return False
    return opt_out_by_token(engine, settings, token, "mailto")


def remove_opt_out(engine: Engine, shop_id: int, address: str) -> bool:
    """Delete an opt-out; return False when there was none."""
    normalized = normalize_address(address)
    with transaction(engine) as session:
        result = session.execute(
            delete(OptOut).where(
                col(OptOut.shop_id) == shop_id, col(OptOut.address) == normalized
            )
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def list_opt_outs(engine: Engine, shop_slug: str | None = None) -> list[OptOutEntry]:
    """Return the opt-outs, of one shop or of all, oldest first."""
    query = select(OptOut, col(Shop.slug)).join(Shop, col(Shop.id) == OptOut.shop_id)
    if shop_slug is not None:
        query = query.where(col(Shop.slug) == shop_slug)
    with transaction(engine) as session:
        rows = list(session.execute(query.order_by(col(OptOut.id))))
    return [
        OptOutEntry(
            shop=slug,
            address=entry.address,
            source=entry.source,
            created_at=entry.created_at.isoformat(timespec="seconds"),
        )
        for entry, slug in rows
    ]

"""Storing raw messages durably, once, before intake replies 250."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from mailhandler.store import transaction
from mailhandler.store.models import InboundMessage, InboundState, utcnow

_MAX_KEY_LENGTH = 900
# A stored copy in one of these states was verified as the shop's, so a
# later message with its Message-ID is a retry.
_SETTLED = (InboundState.PROCESSED, InboundState.IGNORED)
# A Message-ID further into the message than this is not looked for.
_MAX_HEADER_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class Envelope:
    """The SMTP envelope of one raw message."""

    mail_from: str
    rcpt_tos: list[str]
    peer: str | None = None


def _header_block(raw: bytes) -> bytes:
    ends = [index for index in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if index >= 0]
    end = min(ends) if ends else len(raw)
    return raw[: min(end, _MAX_HEADER_BLOCK)]


def header_message_id(raw: bytes) -> str | None:
    """Return the Message-ID header of ``raw`` without angle brackets, or None."""
    # Only the header block is parsed, so a broken body cannot matter here and
    # a 50 MB body is not decoded into a string just to read one header.
    headers = BytesHeaderParser(policy=compat32).parsebytes(_header_block(raw))
    value = headers.get("Message-ID")
    if value is None:
        return None
    text = " ".join(str(value).split()).strip().strip("<>").strip()
    return text or None


def dedup_key(raw: bytes, message_id: str | None) -> str:
    """Return the key under which a shop stores ``raw`` once.

    Messages with a Message-ID are the same when their Message-IDs are;
    messages without one are the same when their bytes are.
    """
    if message_id:
        key = f"mid:{message_id}"
        if len(key) <= _MAX_KEY_LENGTH:
            return key
        return "midsha256:" + hashlib.sha256(message_id.encode()).hexdigest()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class StoredMessage:
    """The id of a stored inbound message, and whether it was stored before."""

    id: int
    duplicate: bool


def store_inbound(
    engine: Engine, shop_ids: list[int], raw: bytes, envelope: Envelope
) -> list[StoredMessage]:
    """Store ``raw`` once per shop in one transaction.

    A message the shop received before keeps its first id and is not stored
    again. A different message with the Message-ID of a stored one is a
    duplicate only once that one was verified and processed. Before that it
    is stored as a variant, so that a forged copy with a copied Message-ID
    cannot keep the shop's genuine email out. The transaction is committed
    (and, on SQLite, synced to disk) when this returns.
    """
    message_id = header_message_id(raw)
    key = dedup_key(raw, message_id)
    digest = hashlib.sha256(raw).hexdigest()
    now = utcnow()
    stored: list[StoredMessage] = []
    with transaction(engine) as session:
        for shop_id in sorted(set(shop_ids)):
            row = {
                "shop_id": shop_id,
                "dedup_key": key,
                "sha256": digest,
                "message_id": message_id[:1000] if message_id else None,
                "raw": raw,
                "size": len(raw),
                "mail_from": envelope.mail_from[:1000],
                "rcpt_tos": envelope.rcpt_tos,
                "peer": envelope.peer,
                "received_at": now,
                "state": "queued",
                "attempts": 0,
                "next_attempt_at": now,
                "defects": [],
            }
            stored.append(_store_one(session, row, digest))
    return stored


def _insert(session: Session, row: dict[str, object]) -> int | None:
    insert_ = (
        postgresql.insert
        if session.get_bind().dialect.name == "postgresql"
        else sqlite.insert
    )
    statement = (
        insert_(InboundMessage)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["shop_id", "dedup_key"])
        .returning(col(InboundMessage.id))
    )
    return session.scalars(statement).first()


def _existing(
    session: Session, shop_id: object, key: object
) -> tuple[int, str | None, str]:
    found = session.execute(
        select(
            col(InboundMessage.id),
            col(InboundMessage.sha256),
            col(InboundMessage.state),
        ).where(
            col(InboundMessage.shop_id) == shop_id,
            col(InboundMessage.dedup_key) == key,
        )
    ).one()
    return found[0], found[1], found[2]


def _store_one(session: Session, row: dict[str, object], digest: str) -> StoredMessage:
    new_id = _insert(session, row)
    if new_id is not None:
        return StoredMessage(id=new_id, duplicate=False)
    old_id, old_digest, old_state = _existing(session, row["shop_id"], row["dedup_key"])
    if old_digest == digest or old_state in _SETTLED:
        return StoredMessage(id=old_id, duplicate=True)
    # Same Message-ID, other bytes, and the first copy is not known to be the
    # shop's: keep this one too.
    variant = {**row, "dedup_key": f"{row['dedup_key']}#sha256:{digest}"}
    new_id = _insert(session, variant)
    if new_id is not None:
        return StoredMessage(id=new_id, duplicate=False)
    old_id, _, _ = _existing(session, row["shop_id"], variant["dedup_key"])
    return StoredMessage(id=old_id, duplicate=True)

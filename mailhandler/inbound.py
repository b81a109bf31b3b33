"""Storing raw messages durably, once, before intake replies 250."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col

from mailhandler.store import transaction
from mailhandler.store.engine import is_postgresql
from mailhandler.store.models import InboundMessage, utcnow

_MAX_KEY_LENGTH = 900
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

    A message a shop received before keeps its first id and is not stored
    again. The transaction is committed (and, on SQLite, synced to disk)
    when this returns.
    """
    message_id = header_message_id(raw)
    key = dedup_key(raw, message_id)
    now = utcnow()
    insert_ = postgresql.insert if is_postgresql(engine) else sqlite.insert
    stored: list[StoredMessage] = []
    with transaction(engine) as session:
        for shop_id in sorted(set(shop_ids)):
            row = {
                "shop_id": shop_id,
                "dedup_key": key,
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
            statement = (
                insert_(InboundMessage)
                .values(**row)
                .on_conflict_do_nothing(index_elements=["shop_id", "dedup_key"])
                .returning(col(InboundMessage.id))
            )
            new_id = session.scalars(statement).first()
            if new_id is not None:
                stored.append(StoredMessage(id=new_id, duplicate=False))
                continue
            old_id = session.scalars(
                select(col(InboundMessage.id)).where(
                    col(InboundMessage.shop_id) == shop_id,
                    col(InboundMessage.dedup_key) == key,
                )
            ).one()
            assert old_id is not None
            stored.append(StoredMessage(id=old_id, duplicate=True))
    return stored

"""SMTP intake: check the recipient, store the raw message, then reply 250.

The handler stays small on purpose. Everything that can go wrong with a
message's content happens later, in the pipeline, from the stored copy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Engine

from mailhandler.inbound import Envelope as StoredEnvelope
from mailhandler.inbound import store_inbound
from mailhandler.settings import Settings
from mailhandler.shops import find_recipient

log = logging.getLogger("bcctrack.smtp")

REPLY_RCPT_OK = "250 2.1.5 Recipient OK"
REPLY_UNKNOWN_RECIPIENT = "550 5.1.1 No such shop address: {address}"
REPLY_QUEUED = "250 2.0.0 queued as {ids}"
REPLY_STORE_FAILED = "451 4.3.0 Cannot store the message now, try again later"
REPLY_LOOKUP_FAILED = "451 4.3.0 Cannot check the recipient now, try again later"

_MAX_LOGGED_ADDRESS = 120


def _printable(value: str) -> str:
    # Client input goes into logs and replies only with control characters
    # escaped, so that it cannot add lines or fake SMTP replies.
    text = value.encode("unicode_escape").decode("ascii")
    return text[:_MAX_LOGGED_ADDRESS]


def _peer(session: Session) -> str:
    # aiosmtpd annotates peer as a string, but it is the socket's address.
    peer: Any = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


class IntakeHandler:
    """aiosmtpd handler that stores each message for the shops it is for."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.on_stored = on_stored

    async def handle_RCPT(  # noqa: N802  (aiosmtpd hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        try:
            recipient = await asyncio.to_thread(
                find_recipient, self.engine, address, self.settings.intake_domain
            )
        except Exception:
            log.exception("%s recipient lookup failed", _peer(session))
            return REPLY_LOOKUP_FAILED
        if recipient is None:
            log.info("%s unknown recipient %s", _peer(session), _printable(address))
            return REPLY_UNKNOWN_RECIPIENT.format(address=_printable(address))
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return REPLY_RCPT_OK

    async def handle_DATA(  # noqa: N802  (aiosmtpd hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or b""
        peer = _peer(session)
        stored_envelope = StoredEnvelope(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            peer=peer,
        )
        try:
            stored = await asyncio.to_thread(self._store, raw, stored_envelope)
        except Exception:
            log.exception("%s storing a %d-byte message failed", peer, len(raw))
            return REPLY_STORE_FAILED
        if not stored:
            # Every recipient's shop disappeared between RCPT and DATA.
            return REPLY_UNKNOWN_RECIPIENT.format(
                address=_printable(", ".join(envelope.rcpt_tos))
            )
        for message in stored:
            if message.duplicate:
                log.info("%d duplicate from %s, not stored again", message.id, peer)
            else:
                log.info("%d stored, %d bytes from %s", message.id, len(raw), peer)
        if self.on_stored is not None:
            self.on_stored()
        return REPLY_QUEUED.format(ids=" ".join(str(message.id) for message in stored))

    def _store(self, raw: bytes, envelope: StoredEnvelope) -> list[Any]:
        shop_ids = []
        for address in envelope.rcpt_tos:
            recipient = find_recipient(
                self.engine, address, self.settings.intake_domain
            )
            if recipient is not None:
                shop_ids.append(recipient.shop_id)
        if not shop_ids:
            return []
        return store_inbound(self.engine, shop_ids, raw, envelope)


class IntakeSMTP(SMTP):
    """aiosmtpd's SMTP with the line limit raised to the message size limit.

    Real shop emails contain lines far longer than RFC 5321's 1000 bytes. CRLF
    stays the only line ending that aiosmtpd's DATA reader accepts, so a bare
    LF or CR cannot end the data early.
    """

    def __init__(self, handler: IntakeHandler, *, data_size_limit: int, **kwargs: Any):
        # aiosmtpd sizes its stream reader from line_length_limit inside
        # __init__, so the instance value has to be set first.
        self.line_length_limit = data_size_limit + 2
        super().__init__(
            handler,
            data_size_limit=data_size_limit,
            enable_SMTPUTF8=True,
            decode_data=False,
            **kwargs,
        )


async def start_intake(
    engine: Engine,
    settings: Settings,
    on_stored: Callable[[], None] | None = None,
) -> asyncio.Server:
    """Start the SMTP listener on the settings' host and port."""
    handler = IntakeHandler(engine, settings, on_stored=on_stored)
    loop = asyncio.get_running_loop()

    def factory() -> IntakeSMTP:
        return IntakeSMTP(
            handler,
            data_size_limit=settings.max_message_size,
            hostname=settings.intake_domain,
            ident="bcctrack",
            loop=loop,
        )

    server = await loop.create_server(
        factory, host=settings.intake_host, port=settings.intake_port
    )
    return server

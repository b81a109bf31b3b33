"""SMTP intake: check the recipient, store the raw message, then reply 250.

The handler stays small on purpose. Everything that can go wrong with a
message's content happens later, in the pipeline, from the stored copy.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Engine

from mailhandler.inbound import Envelope as StoredEnvelope
from mailhandler.inbound import StoredMessage, store_inbound
from mailhandler.optout import record_mailto_opt_out, token_from_address
from mailhandler.postmaster import deliver, is_postmaster
from mailhandler.sender import (
    TxtResolver,
    check_sender,
    default_resolver,
    header_senders,
)
from mailhandler.settings import Settings
from mailhandler.shops import Recipient, find_recipient

log = logging.getLogger("bcctrack.smtp")

REPLY_SENDER_OK = "250 2.1.0 Sender OK"
REPLY_COMMAND_FAILED = "500 5.5.2 Command not understood"
REPLY_INVALID_SENDER = "553 5.1.7 Invalid sender address: control characters"
REPLY_RCPT_OK = "250 2.1.5 Recipient OK"
REPLY_UNKNOWN_RECIPIENT = "550 5.1.1 No such shop address: {address}"
REPLY_QUEUED = "250 2.0.0 queued as {ids}"
REPLY_SENDER_REJECTED = "550 5.7.1 Sender not verified for this address: {detail}"
REPLY_OPTED_OUT = "250 2.0.0 Opt-out recorded"
REPLY_STORE_FAILED = "451 4.3.0 Cannot store the message now, try again later"
REPLY_LOOKUP_FAILED = "451 4.3.0 Cannot check the recipient now, try again later"
REPLY_TIMEOUT = "421 4.4.2 Timeout, closing the connection"
REPLY_TRANSFER_TOO_SLOW = "421 4.4.2 Message transfer took too long, closing"
REPLY_TOO_MANY_TRANSFERS = "451 4.3.2 Too many messages in transfer, try again later"
REPLY_TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients, send the rest separately"
REPLY_TOO_MANY_SESSIONS = "421 4.7.0 Too many connections, try again later"
REPLY_TOO_MANY_FROM_CLIENT = (
    "421 4.7.0 Too many connections from your address, try again later"
)

_MAX_LOGGED_ADDRESS = 120
# Replies of aiosmtpd's own limits, logged like bcctrack's.
_LIMIT_REPLIES = ("552", "500 Line too long", "500 Command line too long")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# Longest SMTP command line read in full: an ESMTP MAIL or RCPT line with its
# parameters and a UTF-8 address stays well below it.
COMMAND_LINE_LIMIT = 4096


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
        resolver: TxtResolver | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.on_stored = on_stored
        self.resolver = resolver or default_resolver(settings.dkim_keys_file)

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd calls this when a command handler raises, for example on
        # some malformed addresses; one line instead of a traceback.
        log.warning("SMTP command failed: %s: %s", type(error).__name__, error)
        return REPLY_COMMAND_FAILED

    async def handle_MAIL(  # noqa: N802  (aiosmtpd hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        # Control characters cannot be part of a mailbox, and a NUL could not
        # even be stored; refuse them here rather than fail at DATA.
        if _CONTROL_CHARACTERS.search(address):
            log.info("%s rejected sender %s", _peer(session), _printable(address))
            return REPLY_INVALID_SENDER
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return REPLY_SENDER_OK

    async def handle_RCPT(  # noqa: N802  (aiosmtpd hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if is_postmaster(address, self.settings.intake_domain):
            return self._add_recipient(session, envelope, address, rcpt_options)
        try:
            recipient = await asyncio.to_thread(
                find_recipient, self.engine, address, self.settings.intake_domain
            )
            # An opt-out address (List-Unsubscribe mailto:) is recorded here.
            opted_out = recipient is None and await asyncio.to_thread(
                record_mailto_opt_out, self.engine, self.settings, address
            )
        except Exception:
            log.exception("%s recipient lookup failed", _peer(session))
            return REPLY_LOOKUP_FAILED
        if opted_out:
            envelope.rcpt_tos.append(address)
            return REPLY_RCPT_OK
        if recipient is None:
            log.info("%s unknown recipient %s", _peer(session), _printable(address))
            return REPLY_UNKNOWN_RECIPIENT.format(address=_printable(address))
        return self._add_recipient(session, envelope, address, rcpt_options)

    def _add_recipient(
        self,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            log.warning(
                "%s over the limit of %d recipients",
                _peer(session),
                self.settings.max_recipients,
            )
            return REPLY_TOO_MANY_RECIPIENTS
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
            outcome = await asyncio.to_thread(self._store, raw, stored_envelope)
        except Exception:
            log.exception("%s storing a %d-byte message failed", peer, len(raw))
            return REPLY_STORE_FAILED
        domain = self.settings.intake_domain
        opt_outs = all(token_from_address(a, domain) for a in envelope.rcpt_tos)
        accepted = outcome.stored or outcome.postmaster_file is not None
        if not accepted and opt_outs:
            return REPLY_OPTED_OUT
        if not accepted:
            if outcome.rejected:
                log.info("%s rejected, sender not verified: %s", peer, outcome.rejected)
                return REPLY_SENDER_REJECTED.format(detail=_printable(outcome.rejected))
            # Every recipient's shop disappeared between RCPT and DATA.
            return REPLY_UNKNOWN_RECIPIENT.format(
                address=_printable(", ".join(envelope.rcpt_tos))
            )
        for message in outcome.stored:
            if message.duplicate:
                log.info("%d duplicate from %s, not stored again", message.id, peer)
            else:
                log.info("%d stored, %d bytes from %s", message.id, len(raw), peer)
        ids = [str(message.id) for message in outcome.stored]
        if outcome.postmaster_file is not None:
            log.warning(
                "mail for postmaster from %s written to %s",
                peer,
                self.settings.postmaster_dir / outcome.postmaster_file,
            )
            ids.append(f"postmaster/{outcome.postmaster_file}")
        if self.on_stored is not None and outcome.stored:
            self.on_stored()
        return REPLY_QUEUED.format(ids=" ".join(ids))

    def _store(self, raw: bytes, envelope: StoredEnvelope) -> _StoreOutcome:
        domain = self.settings.intake_domain
        postmaster = [a for a in envelope.rcpt_tos if is_postmaster(a, domain)]
        postmaster_file = None
        if postmaster:
            postmaster_file = deliver(
                self.settings.postmaster_dir, raw, envelope.mail_from, postmaster
            )
        recipients = []
        for address in envelope.rcpt_tos:
            if address in postmaster:
                continue
            recipient = find_recipient(
                self.engine, address, self.settings.intake_domain
            )
            if recipient is not None:
                recipients.append(recipient)
        accepted, rejected = self._screen(raw, envelope, recipients)
        if not accepted:
            return _StoreOutcome([], rejected, postmaster_file)
        stored = store_inbound(
            self.engine, [r.shop_id for r in accepted], raw, envelope
        )
        return _StoreOutcome(stored, rejected, postmaster_file)

    def _screen(
        self, raw: bytes, envelope: StoredEnvelope, recipients: list[Recipient]
    ) -> tuple[list[Recipient], str]:
        # Shops whose policy is to reject unverified senders check the sender
        # here, before anything is stored; the others check it in the
        # pipeline and quarantine.
        accepted, details = [], []
        for recipient in recipients:
            if recipient.unverified_policy != "reject":
                accepted.append(recipient)
                continue
            check = check_sender(
                recipient.sender_policy,
                raw,
                list(recipient.sender_domains),
                header_senders(raw),
                envelope.mail_from,
                self.resolver,
            )
            if check.verified:
                accepted.append(recipient)
            else:
                details.append(check.detail)
        return accepted, "; ".join(details)


@dataclass(frozen=True)
class _StoreOutcome:
    stored: list[StoredMessage]
    # The reasons of shops with the reject policy that turned the message down.
    rejected: str
    # The file name in the postmaster folder, when postmaster was a recipient.
    postmaster_file: str | None = None


class SessionLimiter:
    """Counts open SMTP sessions, in all and per client address."""

    def __init__(
        self,
        max_sessions: int,
        max_per_client: int,
        max_transfers: int,
        max_transfers_per_client: int,
    ) -> None:
        self.max_sessions = max_sessions
        self.max_per_client = max_per_client
        self.max_transfers = max_transfers
        self.max_transfers_per_client = max_transfers_per_client
        self.total = 0
        self.per_client: Counter[str] = Counter()
        self.transfers = 0
        self.transfers_per_client: Counter[str] = Counter()

    def open(self, client: str) -> str | None:
        """Count a new session; return the rejection reply if over a limit."""
        if self.total >= self.max_sessions:
            return REPLY_TOO_MANY_SESSIONS
        if self.per_client[client] >= self.max_per_client:
            return REPLY_TOO_MANY_FROM_CLIENT
        self.total += 1
        self.per_client[client] += 1
        return None

    def start_transfer(self, client: str) -> bool:
        """Count a DATA transfer; return False if a limit is reached.

        Each transfer keeps up to a few times the message size in memory, so
        the total bounds the intake's memory. The limit per client keeps one
        client from taking every slot.
        """
        if self.transfers >= self.max_transfers:
            return False
        if self.transfers_per_client[client] >= self.max_transfers_per_client:
            return False
        self.transfers += 1
        self.transfers_per_client[client] += 1
        return True

    def end_transfer(self, client: str) -> None:
        """Stop counting a transfer that ``start_transfer`` accepted."""
        self.transfers -= 1
        self.transfers_per_client[client] -= 1
        if self.transfers_per_client[client] <= 0:
            del self.transfers_per_client[client]

    def close(self, client: str) -> None:
        """Stop counting a session that ``open`` accepted."""
        self.total -= 1
        self.per_client[client] -= 1
        if self.per_client[client] <= 0:
            del self.per_client[client]


class IntakeSMTP(SMTP):
    """aiosmtpd's SMTP with bcctrack's limits.

    During DATA the line limit is the message size limit, because real shop
    emails contain lines far longer than RFC 5321's 1000 bytes. Command lines
    keep a limit of a few kilobytes, so that a client cannot make the server
    buffer megabytes before a command is read. CRLF stays the only line
    ending that aiosmtpd's DATA reader accepts, so a bare LF or CR cannot end
    the data early. During DATA, the idle timer restarts whenever bytes
    arrive, so a large message on a slow link is cut only when it stalls.
    """

    def __init__(
        self,
        handler: IntakeHandler,
        *,
        data_size_limit: int,
        limiter: SessionLimiter,
        data_timeout: float,
        data_max_seconds: float,
        **kwargs: Any,
    ):
        # aiosmtpd sizes its stream reader from line_length_limit inside
        # __init__, so the command limit has to be set first. DATA raises the
        # reader's limit for its own duration (smtp_DATA below).
        self.line_length_limit = COMMAND_LINE_LIMIT
        self._data_line_limit = data_size_limit + 2
        self._limiter = limiter
        self._data_timeout = data_timeout
        self._data_max_seconds = data_max_seconds
        self._in_data = False
        self._client: str | None = None
        super().__init__(
            handler,
            data_size_limit=data_size_limit,
            enable_SMTPUTF8=True,
            decode_data=False,
            **kwargs,
        )
        self.line_length_limit = self._data_line_limit

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._client is None and not self._starttls_done():
            peer = transport.get_extra_info("peername")
            client = str(peer[0]) if isinstance(peer, tuple) else str(peer)
            rejection = self._limiter.open(client)
            if rejection is not None:
                log.warning("%s rejected: %s", client, rejection[4:])
                transport.write(rejection.encode() + b"\r\n")  # type: ignore[attr-defined]
                transport.close()
                return
            self._client = client
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._client is None:
            # Rejected in connection_made: aiosmtpd never set up a session.
            return
        self._limiter.close(self._client)
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_data:
            self._reset_timeout(self._data_timeout)

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802  (aiosmtpd command)
        ready = bool(self.envelope is not None and self.envelope.rcpt_tos and not arg)
        client = self._client or ""
        if ready and not self._limiter.start_transfer(client):
            log.warning(
                "%s rejected DATA: %s", self._client, REPLY_TOO_MANY_TRANSFERS[4:]
            )
            await self.push(REPLY_TOO_MANY_TRANSFERS)
            return
        self._in_data = True
        # asyncio.StreamReader has no public way to change its limit; the
        # attribute is read on every readuntil() call (CPython 3.11 to 3.13).
        reader: Any = self._reader
        reader._limit = self._data_line_limit
        deadline = self.loop.call_later(self._data_max_seconds, self._data_overdue)
        try:
            await super().smtp_DATA(arg)
        finally:
            deadline.cancel()
            reader._limit = COMMAND_LINE_LIMIT
            self._in_data = False
            if ready:
                self._limiter.end_transfer(client)

    def _data_overdue(self) -> None:
        # Data that keeps trickling in restarts the idle timer forever; this
        # bounds the whole transfer.
        if not self._in_data:
            return
        log.warning(
            "%s DATA took longer than %g s, closing",
            self._client,
            self._data_max_seconds,
        )
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(REPLY_TRANSFER_TOO_SLOW.encode() + b"\r\n")  # type: ignore[attr-defined]
            self.transport.close()

    async def push(self, status: AnyStr) -> None:
        text = status if isinstance(status, str) else status.decode("utf-8", "replace")
        if text.startswith("250-AUTH"):
            # bcctrack takes no authentication; aiosmtpd would still offer
            # AUTH after STARTTLS, and every attempt could only fail.
            return
        if text.startswith(_LIMIT_REPLIES):
            log.warning("%s %s", self._client, text)
        await super().push(status)

    def _timeout_cb(self) -> None:
        log.warning(
            "%s timed out %s", self._client, "during DATA" if self._in_data else "idle"
        )
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(REPLY_TIMEOUT.encode() + b"\r\n")  # type: ignore[attr-defined]
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    def _starttls_done(self) -> bool:
        return getattr(self, "_original_transport", None) is not None


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """Return the server TLS context from the settings, or None without one."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


async def start_intake(
    engine: Engine,
    settings: Settings,
    on_stored: Callable[[], None] | None = None,
    resolver: TxtResolver | None = None,
) -> asyncio.Server:
    """Start the SMTP listener on the settings' host and port."""
    handler = IntakeHandler(engine, settings, on_stored=on_stored, resolver=resolver)
    limiter = SessionLimiter(
        settings.max_sessions,
        settings.max_sessions_per_client,
        settings.max_concurrent_transfers,
        settings.max_transfers_per_client,
    )
    context = tls_context(settings)
    loop = asyncio.get_running_loop()

    def factory() -> IntakeSMTP:
        return IntakeSMTP(
            handler,
            data_size_limit=settings.max_message_size,
            limiter=limiter,
            data_timeout=settings.smtp_data_timeout,
            data_max_seconds=settings.smtp_data_max_seconds,
            hostname=settings.intake_domain,
            ident="bcctrack",
            tls_context=context,
            require_starttls=settings.require_tls,
            timeout=settings.smtp_command_timeout,
            loop=loop,
        )

    return await loop.create_server(
        factory, host=settings.intake_host, port=settings.intake_port
    )

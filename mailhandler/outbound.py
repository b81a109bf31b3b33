"""Outgoing customer email: building the message and handing it to a backend.

Headers are built from ``email.headerregistry.Address`` objects, never by
joining strings, so a display name cannot add a header or a recipient.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTPUTF8, default
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import aiosmtplib
from aiosmtplib.email import flatten_message

from mailhandler.render import RenderedUpdate
from mailhandler.sanitize import display_name
from mailhandler.store.models import utcnow

log = logging.getLogger("bcctrack.notify")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class OutboundError(Exception):
    """The backend did not take the message.

    ``permanent`` is True when trying again cannot help (the relay rejected
    the recipient or cannot carry the message), so the update fails at once.
    """

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Envelope:
    """Sender, recipient and identity headers of one outgoing message."""

    sender_address: str
    sender_name: str
    recipient_address: str
    recipient_name: str | None
    message_id: str
    # Built by ``optout.unsubscribe_headers`` from the intake domain, the
    # settings and a signed token only.
    list_unsubscribe: str | None = None
    list_unsubscribe_post: str | None = None


def _display_name(value: str | None) -> str:
    # CR, LF and other controls have no place in a display name, also not
    # hidden in an encoded word.
    return display_name(value) or ""


def _address(addr_spec: str, name: str | None) -> Address:
    if _CONTROL.search(addr_spec):
        raise ValueError(f"invalid address {addr_spec!r}: contains control characters")
    username, at, domain = addr_spec.rpartition("@")
    if not at or not username or not domain:
        raise ValueError(f"invalid address {addr_spec!r}: expected local-part@domain")
    # Given as parts, a UTF-8 local part is kept as it is; Address parses an
    # addr_spec as ASCII only.
    return Address(display_name=_display_name(name), username=username, domain=domain)


def _needs_smtputf8(*addresses: str) -> bool:
    return any(not address.isascii() for address in addresses)


def build_message(rendered: RenderedUpdate, envelope: Envelope) -> EmailMessage:
    """Build the MIME message of one rendered update.

    A non-ASCII address (an internationalized mailbox) makes the message use
    the SMTPUTF8 policy, so the address is written as UTF-8; the relay must
    then offer SMTPUTF8.
    """
    utf8 = _needs_smtputf8(envelope.sender_address, envelope.recipient_address)
    message = EmailMessage(policy=SMTPUTF8 if utf8 else default)
    message["From"] = _address(envelope.sender_address, envelope.sender_name)
    message["To"] = _address(envelope.recipient_address, envelope.recipient_name)
    message["Subject"] = _display_name(rendered.subject)
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = envelope.message_id
    message["Auto-Submitted"] = "auto-generated"
    if envelope.list_unsubscribe:
        message["List-Unsubscribe"] = _display_name(envelope.list_unsubscribe)
    if envelope.list_unsubscribe_post:
        message["List-Unsubscribe-Post"] = _display_name(envelope.list_unsubscribe_post)
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    # set_content() clears Content-* headers, so this one comes after it.
    message["Content-Language"] = rendered.language
    return message


Handover = Callable[[], Awaitable[None]]


class Backend(Protocol):
    """A destination for outgoing messages: a folder or a relay."""

    # True when sending the same name twice delivers it once.
    idempotent: bool

    async def send(
        self, message: EmailMessage, name: str, before_handover: Handover
    ) -> None:
        """Deliver ``message``; ``name`` identifies it (a notification id).

        ``before_handover`` is awaited right before the step after which the
        message may have been delivered, so that a crash before it leaves
        nothing ambiguous.
        """


class FileBackend:
    """Writes each message as an .eml file into the outbox folder.

    A message is written to a temporary file, synced and renamed, so the
    outbox never contains half a message. Writing the same name again replaces
    the file instead of adding a second one.
    """

    idempotent = True

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(
        self, message: EmailMessage, name: str, before_handover: Handover
    ) -> None:
        await before_handover()
        await asyncio.to_thread(self._write, message.as_bytes(), name)

    def _write(self, data: bytes, name: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{name}.eml"
        temporary = self.folder / f".{name}.eml.tmp"
        try:
            with temporary.open("wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            temporary.replace(target)
        except OSError as error:
            raise OutboundError(f"cannot write {target}: {error}") from error


class SmtpBackend:
    """Sends each message to an SMTP relay with aiosmtplib.

    aiosmtplib upgrades the connection with STARTTLS when the relay offers it.
    """

    idempotent = False

    def __init__(self, host: str, port: int, timeout: float = 60.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    @staticmethod
    async def _transfer(
        client: aiosmtplib.SMTP, message: EmailMessage, before_handover: Handover
    ) -> None:
        # The steps of aiosmtplib's send_message, split so that the hand-over
        # mark is written after the relay accepted sender and recipient and
        # before DATA: only a crash during DATA leaves the outcome unknown.
        sender = str(message["From"].addresses[0].addr_spec)
        recipient = str(message["To"].addresses[0].addr_spec)
        await client.ehlo()
        utf8 = _needs_smtputf8(sender, recipient)
        options = []
        if utf8:
            if not client.supports_extension("smtputf8"):
                raise aiosmtplib.SMTPNotSupported(
                    "the address has non-ASCII characters and the relay does not "
                    "offer SMTPUTF8"
                )
            options.append("SMTPUTF8")
        cte_type = "7bit"
        if client.supports_extension("8BITMIME"):
            options.append("BODY=8BITMIME")
            cte_type = "8bit"
        encoding = "utf-8" if utf8 else "ascii"
        await client.mail(sender, options=options, encoding=encoding)
        await client.rcpt(recipient, encoding=encoding)
        await before_handover()
        await client.data(flatten_message(message, utf8=utf8, cte_type=cte_type))

    async def send(
        self, message: EmailMessage, name: str, before_handover: Handover
    ) -> None:
        try:
            client = aiosmtplib.SMTP(
                hostname=self.host, port=self.port, timeout=self.timeout
            )
            async with client:
                await self._transfer(client, message, before_handover)
        except aiosmtplib.SMTPRecipientRefused as error:
            raise OutboundError(
                f"relay {self.host}:{self.port} refused the recipient: {error}",
                permanent=error.code >= 500,
            ) from error
        except aiosmtplib.SMTPNotSupported as error:
            raise OutboundError(
                f"relay {self.host}:{self.port} cannot carry this message: {error}",
                permanent=True,
            ) from error
        except aiosmtplib.SMTPResponseException as error:
            raise OutboundError(
                f"relay {self.host}:{self.port} did not take the message: {error}",
                permanent=error.code >= 500,
            ) from error
        except (aiosmtplib.SMTPException, OSError) as error:
            raise OutboundError(
                f"relay {self.host}:{self.port} did not take the message: {error}"
            ) from error


def make_backend(outbound: str, outbox: Path) -> Backend:
    """Return the backend for the ``outbound`` setting."""
    if outbound == "file":
        return FileBackend(outbox)
    parts = urlsplit(outbound)
    if parts.scheme != "smtp" or not parts.hostname:
        raise ValueError(
            f"invalid outbound {outbound!r}: use 'file' or 'smtp://host:port'"
        )
    return SmtpBackend(parts.hostname, parts.port or 25)

"""Parsing a raw message into the parts extraction reads.

mail-parser does the MIME work. A message that parses only in part (a
missing boundary, an undecodable charset) is returned as far as it goes,
with the parser's defects listed on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from email.utils import getaddresses

import mailparser

log = logging.getLogger("bcctrack.extract")


class MessageParseError(Exception):
    """The raw message cannot be parsed at all."""


@dataclass(frozen=True)
class Address:
    """One mailbox from an address header."""

    email: str
    name: str | None = None

    @property
    def domain(self) -> str:
        """The lower-case domain after the last '@', or ''."""
        _, at, domain = self.email.rpartition("@")
        return domain.lower().rstrip(".") if at else ""


@dataclass
class ParsedMessage:
    """The headers and parts of one email that extraction reads."""

    subject: str = ""
    from_: list[Address] = field(default_factory=list)
    to: list[Address] = field(default_factory=list)
    message_id: str | None = None
    content_language: str | None = None
    text_parts: list[str] = field(default_factory=list)
    html_parts: list[str] = field(default_factory=list)
    # Messages attached as message/rfc822 (forwarded as attachment).
    attached_messages: list[ParsedMessage] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)


def _addresses(pairs: list[tuple[str, str]] | None) -> list[Address]:
    result = []
    for name, address in pairs or []:
        email = (address or "").strip()
        if not email:
            continue
        result.append(Address(email=email, name=(name or "").strip() or None))
    return result


def _header(parsed: mailparser.MailParser, name: str) -> str | None:
    value = parsed.message.get(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _flatten_defects(raw_defects: list[object]) -> list[str]:
    # mail-parser reports defects as [{part content type: [defect, ...]}].
    flat: list[str] = []
    for entry in raw_defects:
        if isinstance(entry, dict):
            for part, defects in entry.items():
                for defect in defects:
                    flat.append(f"{part}: {defect}")
        else:
            flat.append(str(entry))
    return flat


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse ``raw`` into a ParsedMessage; raise MessageParseError if it cannot."""
    try:
        parsed = mailparser.parse_from_bytes(raw)
    except Exception as error:
        raise MessageParseError(f"cannot parse the message: {error}") from error

    message = ParsedMessage(
        subject=parsed.subject or "",
        from_=_addresses(parsed.from_),
        to=_addresses(parsed.to),
        message_id=_header(parsed, "Message-ID"),
        content_language=_header(parsed, "Content-Language"),
        text_parts=[part for part in parsed.text_plain if part],
        html_parts=[part for part in parsed.text_html if part],
        defects=_flatten_defects(parsed.defects),
    )
    for attachment in parsed.attachments:
        if attachment.get("mail_content_type") != "message/rfc822":
            continue
        payload = attachment.get("payload")
        if not isinstance(payload, str):
            continue
        try:
            message.attached_messages.append(
                parse_message(payload.encode("utf-8", "surrogateescape"))
            )
        except MessageParseError as error:
            message.defects.append(f"message/rfc822: {error}")
    return message


def header_addresses(value: str) -> list[Address]:
    """Parse an address header value into Address objects."""
    return _addresses(getaddresses([value]))

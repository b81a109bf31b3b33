"""Parsing a raw message into the parts extraction reads.

mail-parser does the MIME work and decodes the headers, except the address
headers: those are split into addresses first and their display names
decoded afterwards, because a decoded name may hold "<", ",", ":" or a line
break that would change where one address ends and the next begins. The text
and HTML
bodies are then read from its message tree here, because real shop emails
break MIME in ways a parser cannot see through on its own: a part without a
charset in 8-bit, HTML sent as text/plain, a multipart body without its
MIME headers, quoted-printable without its Content-Transfer-Encoding, a
boundary that differs between the header and the body. A message that parses
only in part is returned as far as it goes, with the parser's defects listed
on it.
"""

from __future__ import annotations

import email
import email.policy
import logging
import quopri
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

import mailparser

from extractors.text import looks_like_html

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
    # The Date: header in the sender's own offset, or None.
    date: datetime | None = None
    text_parts: list[str] = field(default_factory=list)
    html_parts: list[str] = field(default_factory=list)
    # Messages attached as message/rfc822 (forwarded as attachment).
    attached_messages: list[ParsedMessage] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)


# One RFC 2047 encoded word, or several separated by whitespace (which
# decoding drops between them).
_ENCODED_WORD = r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?="
_ENCODED_RUN = re.compile(rf"{_ENCODED_WORD}(?:\s+{_ENCODED_WORD})*")
# Private-use characters stand for an encoded run while the header is split
# into addresses: they are atom characters and no real name contains them.
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def _decode_words(run: str) -> str:
    try:
        return str(make_header(decode_header(run)))
    except (HeaderParseError, LookupError, UnicodeDecodeError, ValueError):
        return run


def _clean_name(name: str, runs: list[str]) -> str | None:
    def decoded(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return _decode_words(runs[index]) if index < len(runs) else ""

    text = _PLACEHOLDER.sub(decoded, name)
    # A decoded CR or LF must not reach a header bcctrack writes.
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text or None


def header_addresses(value: str) -> list[Address]:
    """Parse an address header value, as received, into Address objects.

    Encoded display names are decoded after the value is split into
    addresses; CR, LF and other control characters in names become spaces.
    """
    runs: list[str] = []

    def hide(match: re.Match[str]) -> str:
        runs.append(match.group())
        return f"\ue000{len(runs) - 1}\ue001"

    hidden = _ENCODED_RUN.sub(hide, _FOLD.sub("", value))
    result = []
    for name, address in getaddresses([hidden]):
        email_address = (address or "").strip()
        if "@" not in email_address or _PLACEHOLDER.search(email_address):
            continue
        result.append(Address(email=email_address, name=_clean_name(name, runs)))
    return result


def _raw_header(message: Message, name: str) -> str:
    """Return every ``name`` header of ``message`` as received, joined by commas.

    8-bit bytes in a header, which RFC 5322 forbids but shops send, are read
    as UTF-8, else Windows-1252.
    """
    values = []
    for key, value in message.raw_items():
        if key.lower() != name.lower():
            continue
        raw = str(value).encode("ascii", errors="surrogateescape")
        values.append(decode_bytes(raw, None))
    return ", ".join(values)


def _header(message: Message, name: str) -> str | None:
    value = message.get(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _date(message: Message) -> datetime | None:
    value = _header(message, "Date")
    if value is None:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None


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


def decode_bytes(payload: bytes, charset: str | None) -> str:
    """Decode a body with its charset; without one, UTF-8 or else Windows-1252.

    Shops that send 8-bit text without a charset use UTF-8 or a Western
    legacy charset; Windows-1252 decodes every byte that Latin-1 does.
    """
    if charset:
        try:
            return payload.decode(charset)
        except (LookupError, UnicodeDecodeError):
            pass
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("windows-1252", errors="replace")


_QP_SOFT_BREAK = re.compile(r"=\r?\n")
_QP_ESCAPE = re.compile(r"=[0-9A-F]{2}")


def _undo_stray_quoted_printable(text: str) -> str:
    # A body that is quoted-printable without saying so still shows its
    # soft line breaks and =3D escapes; decode it when both are plentiful.
    if len(_QP_SOFT_BREAK.findall(text)) < 3 or "=3D" not in text.upper():
        return text
    raw = text.encode("utf-8", errors="surrogateescape")
    return decode_bytes(quopri.decodestring(raw), None)


_BOUNDARY_LINE = re.compile(rb"^--([^\s]{1,200}?)(--)?[ \t]*\r?$", re.MULTILINE)
_PART_HEADERS = re.compile(r"^--(\S+)\r?\n(?:[\w-]+:[^\n]*\r?\n)+", re.IGNORECASE)


def _parts_from_multipart_body(body: bytes, boundary: bytes) -> list[Message]:
    header = b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\n\n'
    message = email.message_from_bytes(header + body, policy=email.policy.compat32)
    return [part for part in message.walk() if not part.is_multipart()]


def _part_text(part: Message) -> str | None:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return None
    return decode_bytes(payload, part.get_content_charset())


class _Bodies:
    """The text and HTML bodies of a message, gathered part by part."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.html: list[str] = []

    def add(self, content_type: str, text: str) -> None:
        if not text.strip():
            return
        lost_headers = _PART_HEADERS.match(text.lstrip())
        if content_type == "text/plain" and lost_headers:
            # A multipart body whose MIME headers were lost: read its parts.
            raw = text.lstrip().encode("utf-8", errors="surrogateescape")
            boundary = lost_headers.group(1).encode()
            for part in _parts_from_multipart_body(raw, boundary):
                self.add_part(part)
            return
        text = _undo_stray_quoted_printable(text)
        if content_type == "text/html" or looks_like_html(text):
            self.html.append(text)
        else:
            self.text.append(text)

    def add_part(self, part: Message) -> None:
        content_type = part.get_content_type()
        if content_type not in ("text/plain", "text/html"):
            return
        if part.get_content_disposition() == "attachment":
            return
        text = _part_text(part)
        if text is not None:
            self.add(content_type, text)


def _walk_bodies(message: Message, bodies: _Bodies) -> list[Message]:
    """Gather the bodies of ``message``; return its attached messages."""
    attached: list[Message] = []
    stack = [message]
    while stack:
        part = stack.pop()
        if part.get_content_type() == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list):
                attached.extend(p for p in payload if isinstance(p, Message))
            continue
        if part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend(reversed([p for p in payload if isinstance(p, Message)]))
            continue
        bodies.add_part(part)
    return attached


def _salvage_raw_body(raw: bytes, bodies: _Bodies) -> None:
    """Read bodies from a message whose declared MIME structure found none.

    The boundary the body really uses is the most frequent boundary line; the
    preamble before it can hold the HTML body itself.
    """
    _, separator, body = raw.partition(b"\n\n")
    if not separator:
        _, _, body = raw.partition(b"\r\n\r\n")
    boundaries = [m.group(1) for m in _BOUNDARY_LINE.finditer(body)]
    if not boundaries:
        bodies.add("text/plain", decode_bytes(body, None))
        return
    boundary = max(set(boundaries), key=boundaries.count)
    first = re.search(rb"^--" + re.escape(boundary), body, re.MULTILINE)
    preamble = body[: first.start()] if first else b""
    if preamble.strip():
        bodies.add("text/plain", decode_bytes(preamble, None))
    for part in _parts_from_multipart_body(body, boundary):
        bodies.add_part(part)


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse ``raw`` into a ParsedMessage; raise MessageParseError if it cannot."""
    try:
        parsed = mailparser.parse_from_bytes(raw)
    except Exception as error:
        raise MessageParseError(f"cannot parse the message: {error}") from error
    return _from_mailparser(parsed, raw)


def _from_message(message: Message) -> ParsedMessage:
    try:
        parsed = mailparser.parse_from_string(message.as_string())
    except Exception as error:
        raise MessageParseError(f"cannot parse the message: {error}") from error
    return _from_mailparser(parsed, None)


def _from_mailparser(parsed: mailparser.MailParser, raw: bytes | None) -> ParsedMessage:
    tree: Message = parsed.message
    bodies = _Bodies()
    attached = _walk_bodies(tree, bodies)
    if not bodies.text and not bodies.html and raw is not None:
        _salvage_raw_body(raw, bodies)

    message = ParsedMessage(
        subject=_first_text(parsed.subject),
        from_=header_addresses(_raw_header(tree, "From")),
        to=header_addresses(_raw_header(tree, "To")),
        message_id=_header(tree, "Message-ID"),
        content_language=_header(tree, "Content-Language"),
        date=_date(tree),
        text_parts=bodies.text,
        html_parts=bodies.html,
        defects=_flatten_defects(parsed.defects),
    )
    for inner in attached:
        try:
            message.attached_messages.append(_from_message(inner))
        except MessageParseError as error:
            message.defects.append(f"message/rfc822: {error}")
    return message


def _first_text(value: object) -> str:
    # mail-parser returns a list when a header such as Subject is repeated.
    if isinstance(value, list | tuple):
        value = next((item for item in value if item), "")
    return str(value) if value else ""

"""The readable content of one message, as every extractor reads it.

A forwarded email is read as the message it forwards: an attached
message/rfc822, or the block after an inline "forwarded message" marker,
whose From, To and Subject lines stand for the original's headers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from extractors import languages
from extractors.message import Address, ParsedMessage, header_addresses
from extractors.text import clean_lines, clean_text, read_html


@dataclass(frozen=True)
class Line:
    """One line of visible text and where it is."""

    text: str
    # "subject", "html" or "text", with the part number for parts.
    location: str


@dataclass(frozen=True)
class Link:
    """A link target as written, its visible text, and where it is."""

    href: str
    text: str
    location: str


@dataclass
class Document:
    """What extraction reads from one message."""

    subject: str
    lines: list[Line] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    # The HTML parts as received, for shop rules with CSS selectors.
    html: list[str] = field(default_factory=list)
    microdata: list[dict[str, Any]] = field(default_factory=list)
    jsonld: list[Any] = field(default_factory=list)
    attributes: list[tuple[str, str]] = field(default_factory=list)
    html_lang: str | None = None
    content_language: str | None = None
    sender: Address | None = None
    recipient: Address | None = None
    date: datetime | None = None
    # How the message was forwarded ("attached" or the marker line), or None.
    forwarded: str | None = None

    def visible_text(self) -> str:
        """Return the subject and every line, one per line, for containment tests."""
        return "\n".join([self.subject, *(line.text for line in self.lines)])


_FORWARD_SUBJECT = re.compile(
    r"^\s*(?:fwd?|wg|tr|rv|i|vs|vb|fw|doorst|enc|pd|pdf|vl|přeposlat)\s*:", re.I
)
_PLAIN_URL = re.compile(r"https?://[^\s<>\"'\])]+", re.IGNORECASE)
_QUOTE_PREFIX = re.compile(r"^(?:>\s?)+")
_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
_HEADER_LINE = re.compile(
    r"^\*?(?P<name>[^\W\d][\w .-]{0,15}?)\s*\*?:\s*(?P<value>.*)$"
)
_FORWARD_HEADER_LINES = 24


def _text_links(text: str, location: str) -> list[Link]:
    return [
        Link(href=match.group().rstrip(".,;"), text="", location=location)
        for match in _PLAIN_URL.finditer(text)
    ]


def _read_parts(message: ParsedMessage, document: Document) -> None:
    document.html = list(message.html_parts)
    for number, html in enumerate(message.html_parts):
        location = f"html[{number}]"
        content = read_html(html)
        document.lines.extend(Line(text, location) for text in content.lines)
        document.links.extend(
            Link(link.href, link.text, location) for link in content.links
        )
        document.microdata.extend(content.microdata)
        document.jsonld.extend(content.jsonld)
        document.attributes.extend(content.attributes)
        document.html_lang = document.html_lang or content.lang
    for number, text in enumerate(message.text_parts):
        location = f"text[{number}]"
        for raw_line in clean_lines(text):
            line = _QUOTE_PREFIX.sub("", raw_line).strip()
            if line:
                document.lines.append(Line(line, location))
        document.links.extend(_text_links(text, location))


def _is_forward_marker(text: str) -> bool:
    if len(text) > 80:
        return False
    match = languages.list_pattern("forward_markers").search(text)
    if match is None:
        return False
    # The marker is the whole line apart from dashes, colons and spaces.
    rest = text[: match.start()] + text[match.end() :]
    return not re.sub(r"[-\s:_=*<>]+", "", rest)


def _forwarded_headers(lines: list[Line]) -> dict[str, str]:
    """Read From, To, Date and Subject from the lines after a forward marker."""
    names = {
        header: languages.header_names(header)
        for header in ("from", "to", "date", "subject")
    }
    found: dict[str, str] = {}
    current: str | None = None
    for line in lines[:_FORWARD_HEADER_LINES]:
        match = _HEADER_LINE.match(line.text)
        header = None
        if match:
            name = match.group("name").strip().casefold()
            header = next((h for h, table in names.items() if name in table), None)
        if header is None and match is not None:
            current = None  # another header (Reply-To, Cc) ends the last one
            continue
        if header is not None and match is not None:
            current = header
            found.setdefault(header, "")
            if found[header]:
                current = None  # a second From: belongs to the body
                continue
            found[header] = match.group("value").strip()
        elif current is not None and current != "subject":
            # Mail programs wrap long addresses onto the next lines.
            found[current] = f"{found[current]} {line.text}".strip()
        if "to" in found and _EMAIL.search(found["to"]) and current != "to":
            break
    return found


def _first_address(value: str) -> Address | None:
    match = _EMAIL.search(value)
    if match is None:
        return None
    for address in header_addresses(value.replace("\n", " ")):
        if address.email == match.group():
            return address
    return Address(email=match.group())


def _apply_inline_forward(document: Document) -> None:
    for index, line in enumerate(document.lines):
        if not _is_forward_marker(line.text):
            continue
        following = [
            later
            for later in document.lines[index + 1 :]
            if later.location == line.location
        ]
        headers = _forwarded_headers(following)
        recipient = _first_address(headers.get("to", ""))
        if recipient is None:
            continue
        document.forwarded = line.text
        document.recipient = recipient
        document.sender = _first_address(headers.get("from", "")) or document.sender
        if headers.get("subject"):
            document.subject = clean_text(headers["subject"]).strip()
        # The forwarder's own note above the marker is not the shop's email.
        document.lines = [
            later
            for position, later in enumerate(document.lines)
            if position > index or later.location != line.location
        ]
        return


def _forwarded_attachment(message: ParsedMessage) -> ParsedMessage | None:
    if not message.attached_messages:
        return None
    outer_text = sum(len(part.strip()) for part in message.text_parts)
    if _FORWARD_SUBJECT.match(message.subject) or outer_text < 400:
        return message.attached_messages[0]
    return None


def read_document(message: ParsedMessage) -> Document:
    """Return the Document of ``message``, reading through a forward."""
    forwarded = None
    inner = _forwarded_attachment(message)
    if inner is not None:
        message, forwarded = inner, "attached message/rfc822"
    document = Document(
        subject=clean_text(message.subject).strip(),
        content_language=message.content_language,
        sender=message.from_[0] if message.from_ else None,
        recipient=message.to[0] if message.to else None,
        date=message.date,
        forwarded=forwarded,
    )
    _read_parts(message, document)
    if forwarded is None:
        _apply_inline_forward(document)
    return document

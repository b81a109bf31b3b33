"""The readable content of one message, as every extractor reads it.

A forwarded email is read as the message it forwards: an attached
message/rfc822, or the block after an inline "forwarded message" marker,
whose From, To and Subject lines stand for the original's headers. A forward
is the forwarded message with at most a short note above it. Outlook prints
the same "Original Message" marker above the message that a reply quotes. A
reply has its own content above the marker and the old message below it, so
there the quoted block is dropped instead.
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
    # (header, cell) for the cells under a tracking-number column of a table.
    tracking_columns: list[tuple[str, str]] = field(default_factory=list)
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
_REPLY_SUBJECT = re.compile(
    r"^\s*(?:re|aw|antw|antwort|sv|odp|res|rif|r|vá|ynt)\s*(?:\[\d+\])?\s*:", re.I
)
# The maximum length, in characters, of a forwarder's note around a
# forwarded message. Longer text is a message of its own.
_FORWARD_NOTE_LIMIT = 400
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
        content = read_html(html, languages.list_pattern("tracking_labels"))
        document.lines.extend(Line(text, location) for text in content.lines)
        document.links.extend(
            Link(link.href, link.text, location) for link in content.links
        )
        document.microdata.extend(content.microdata)
        document.jsonld.extend(content.jsonld)
        document.attributes.extend(content.attributes)
        document.tracking_columns.extend(content.columns)
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


def _same_domain(first: str, second: str) -> bool:
    return (
        first == second or first.endswith("." + second) or second.endswith("." + first)
    )


def choose_recipient(
    recipients: list[Address], sender: Address | None
) -> Address | None:
    """Return the first recipient outside the sender's own domain, else the first.

    Shops copy their own archive or service addresses into To: beside the
    customer.
    """
    domain = sender.domain if sender is not None else ""
    for recipient in recipients:
        if not domain or not _same_domain(recipient.domain, domain):
            return recipient
    return recipients[0] if recipients else None


def _addresses_in(value: str) -> list[Address]:
    # The value may run on into the forwarded body: take the addresses the
    # text shows, with their display names where the header parser finds them.
    named = {address.email: address for address in header_addresses(value)}
    found = dict.fromkeys(match.group() for match in _EMAIL.finditer(value))
    return [named.get(email, Address(email=email)) for email in found]


def _is_reply(document: Document, index: int) -> bool:
    """Return whether the marker at ``document.lines[index]`` opens a quoted reply."""
    subject = document.subject
    if _REPLY_SUBJECT.match(subject) and not _FORWARD_SUBJECT.match(subject):
        return True
    location = document.lines[index].location
    above = sum(
        len(line.text) for line in document.lines[:index] if line.location == location
    )
    if above > _FORWARD_NOTE_LIMIT:
        return True
    below = [line for line in document.lines[index + 1 :] if line.location == location]
    headers = _header_block_length(below)
    return above > sum(len(line.text) for line in below[headers:])


def _header_block_length(lines: list[Line]) -> int:
    """Return how many of ``lines`` are the header lines of a quoted block."""
    names = {
        name
        for header in ("from", "to", "date", "subject")
        for name in languages.header_names(header)
    } | {"cc", "bcc", "reply-to"}
    count = 0
    for line in lines[:_FORWARD_HEADER_LINES]:
        match = _HEADER_LINE.match(line.text)
        if match is None or match.group("name").strip().casefold() not in names:
            break
        count += 1
    return count


@dataclass(frozen=True)
class _Marker:
    """A forward marker line with the headers of the block below it."""

    index: int
    headers: dict[str, str]
    recipients: list[Address]


def _first_markers(document: Document) -> dict[str, _Marker]:
    """Return, per part, its first marker whose block names a recipient."""
    markers: dict[str, _Marker] = {}
    for index, line in enumerate(document.lines):
        if line.location in markers or not _is_forward_marker(line.text):
            continue
        window = document.lines[index + 1 : index + 1 + _FORWARD_HEADER_LINES]
        headers = _forwarded_headers(
            [later for later in window if later.location == line.location]
        )
        recipients = _addresses_in(headers.get("to", ""))
        if recipients:
            markers[line.location] = _Marker(index, headers, recipients)
    return markers


def _read_forward(document: Document, marker: _Marker) -> None:
    forwarded_from = _addresses_in(marker.headers.get("from", ""))
    sender = forwarded_from[0] if forwarded_from else document.sender
    document.forwarded = document.lines[marker.index].text
    document.recipient = choose_recipient(marker.recipients, sender)
    document.sender = sender
    if marker.headers.get("subject"):
        document.subject = clean_text(marker.headers["subject"]).strip()


def _apply_inline_forward(document: Document) -> None:
    markers = _first_markers(document)
    if not markers:
        return
    first = min(markers.values(), key=lambda marker: marker.index)
    starts = {location: marker.index for location, marker in markers.items()}
    lines = list(enumerate(document.lines))

    if _is_reply(document, first.index):
        # The quoted message is older than this one and adds nothing.
        document.lines = [
            line
            for position, line in lines
            if position < starts.get(line.location, len(lines))
        ]
        return

    _read_forward(document, first)
    # The forwarder's own note above the marker is not the shop's email.
    document.lines = [
        line for position, line in lines if position > starts.get(line.location, -1)
    ]


def forwards_attachment(message: ParsedMessage) -> bool:
    """Return whether ``message`` forwards the message attached to it.

    It does when its subject starts with a forward prefix ("Fwd:") or its own
    text is a short note.
    ``extract_message`` also reads the attachment when the outer message
    yields neither an order nor a shipment.
    """
    if not message.attached_messages:
        return False
    outer_text = sum(len(part.strip()) for part in message.text_parts)
    return bool(_FORWARD_SUBJECT.match(message.subject)) or (
        outer_text < _FORWARD_NOTE_LIMIT
    )


def _document(message: ParsedMessage, forwarded: str | None) -> Document:
    sender = message.from_[0] if message.from_ else None
    document = Document(
        subject=clean_text(message.subject).strip(),
        content_language=message.content_language,
        sender=sender,
        recipient=choose_recipient(message.to, sender),
        date=message.date,
        forwarded=forwarded,
    )
    _read_parts(message, document)
    if forwarded is None:
        _apply_inline_forward(document)
    return document


def read_attached(message: ParsedMessage) -> Document:
    """Return the Document of the first message attached to ``message``."""
    return _document(message.attached_messages[0], "attached message/rfc822")


def read_document(message: ParsedMessage) -> Document:
    """Return the Document of ``message``, reading through a forward."""
    if forwards_attachment(message):
        return read_attached(message)
    return _document(message, None)

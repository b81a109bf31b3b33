"""Readable text from HTML and plain-text parts, normalized for matching.

HTML goes through lxml's parser directly: BeautifulSoup's tree on top of it
costs several times the parse itself, and extraction reads every message.
Block elements and table cells end a line, so that words from adjacent cells
never run together; soft hyphens, zero-width and direction marks go; no-break
spaces become spaces.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import lxml.html  # type: ignore[import-untyped]
from lxml import etree

log = logging.getLogger("bcctrack.extract")

# Characters that print nothing: soft hyphen, combining grapheme joiner,
# zero-width space and joiners, word joiner, BOM, and the bidirectional
# marks, embeddings and isolates.
_INVISIBLE = dict.fromkeys(
    map(
        ord,
        "\u00ad\u034f\u180e\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff"
        "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
    )
)
_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]+")

_BLOCK_TAGS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "caption",
        "center",
        "dd",
        "details",
        "dialog",
        "dir",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "html",
        "legend",
        "li",
        "main",
        "menu",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
        "option",
    ]
)
_SKIPPED_TAGS = frozenset(["head", "script", "style", "template", "title", "xml"])
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*>", re.IGNORECASE)


def clean_text(text: str) -> str:
    """Remove invisible characters and make every run of spaces one space."""
    return _SPACES.sub(" ", text.translate(_INVISIBLE))


def clean_lines(text: str) -> list[str]:
    """Return the non-empty, cleaned and stripped lines of ``text``."""
    lines = []
    for line in clean_text(text).splitlines():
        stripped = line.strip()
        if stripped:
            lines.append(stripped)
    return lines


@dataclass
class HtmlLink:
    """An ``<a href>`` with its visible text."""

    href: str
    text: str


@dataclass
class HtmlContent:
    """What extraction reads from one HTML part."""

    lines: list[str] = field(default_factory=list)
    links: list[HtmlLink] = field(default_factory=list)
    # Top-level schema.org microdata items, as {"@type": ..., property: [...]}.
    microdata: list[dict[str, Any]] = field(default_factory=list)
    jsonld: list[Any] = field(default_factory=list)
    # (id or class value, element text) of elements whose id or class names
    # what they contain, such as <span id="trackingNumber">.
    attributes: list[tuple[str, str]] = field(default_factory=list)
    # (header cell text, cell text) for the cells under a table column whose
    # header matched the pattern given to ``read_html``.
    columns: list[tuple[str, str]] = field(default_factory=list)
    lang: str | None = None


def parse_html(html: str) -> etree._Element | None:
    """Parse ``html`` leniently; return None when nothing is left to read."""
    html = _XML_DECLARATION.sub("", html, count=1)
    if not html.strip():
        return None
    try:
        root: etree._Element = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError) as error:
        log.debug("HTML part not parsed: %s", error)
        return None
    return root


def _visible_text(root: etree._Element) -> str:
    # An explicit stack rather than recursion: unclosed HTML nests deeply.
    parts: list[str] = []
    stack: list[tuple[etree._Element, bool]] = [(root, False)]
    while stack:
        element, closing = stack.pop()
        tag = element.tag
        if closing:
            if isinstance(tag, str) and tag.lower() in _BLOCK_TAGS:
                parts.append("\n")
            if element.tail:
                parts.append(element.tail)
            continue
        if not isinstance(tag, str) or tag.lower() in _SKIPPED_TAGS:
            # Comments and skipped elements still have a tail that shows.
            if element.tail:
                parts.append(element.tail)
            continue
        lowered = tag.lower()
        if lowered in _BLOCK_TAGS or lowered == "br":
            parts.append("\n")
        if element.text:
            parts.append(element.text)
        stack.append((element, True))
        stack.extend((child, False) for child in reversed(element))
    return "".join(parts)


def _element_text(element: etree._Element) -> str:
    return clean_text(" ".join(element.itertext())).strip()


def _links(root: etree._Element) -> list[HtmlLink]:
    links = []
    for anchor in root.iterfind(".//a[@href]"):
        href = (anchor.get("href") or "").strip()
        if href and not href.startswith(("mailto:", "tel:", "#", "cid:")):
            links.append(HtmlLink(href=href, text=_element_text(anchor)))
    return links


def _jsonld(root: etree._Element) -> list[Any]:
    found = []
    for script in root.iterfind(".//script[@type]"):
        if "ld+json" not in (script.get("type") or "").lower():
            continue
        try:
            found.append(json.loads(script.text or ""))
        except json.JSONDecodeError as error:
            log.debug("invalid JSON-LD skipped: %s", error)
    return found


def _property_value(element: etree._Element, depth: int) -> Any:
    if element.get("itemscope") is not None:
        return _microdata_item(element, depth + 1)
    tag = element.tag.lower() if isinstance(element.tag, str) else ""
    if tag == "meta":
        return element.get("content", "")
    if tag in ("a", "link", "area"):
        return element.get("href", "")
    if tag in ("img", "audio", "video", "source"):
        return element.get("src", "")
    if tag == "time" and element.get("datetime"):
        return element.get("datetime", "")
    if tag == "data" and element.get("value"):
        return element.get("value", "")
    return _element_text(element)


def _microdata_item(scope: etree._Element, depth: int = 0) -> dict[str, Any]:
    item: dict[str, Any] = {"@type": (scope.get("itemtype") or "").strip()}
    if depth > 8:
        return item
    stack = list(reversed(scope))
    while stack:
        element = stack.pop()
        if not isinstance(element.tag, str):
            continue
        names = (element.get("itemprop") or "").split()
        for name in names:
            item.setdefault(name, []).append(_property_value(element, depth))
        # A nested item owns the properties inside it.
        if element.get("itemscope") is None:
            stack.extend(reversed(element))
    return item


def _microdata(root: etree._Element) -> list[dict[str, Any]]:
    return [
        _microdata_item(scope)
        for scope in root.iterfind(".//*[@itemscope]")
        if scope.get("itemprop") is None
    ]


_ATTRIBUTE_HINT = re.compile(r"track|parcel|shipment|waybill|sendung|order", re.I)


def _attributes(root: etree._Element) -> list[tuple[str, str]]:
    found = []
    for element in root.iterfind(".//*[@id]"):
        value = element.get("id") or ""
        if _ATTRIBUTE_HINT.search(value):
            found.append((value, _element_text(element)))
    for element in root.iterfind(".//*[@class]"):
        value = element.get("class") or ""
        if _ATTRIBUTE_HINT.search(value):
            found.append((value, _element_text(element)))
    return found


_CELL_TAGS = ("td", "th")
# A header cell is short; a longer cell is a sentence that mentions the label.
_MAX_HEADER_LENGTH = 40
# The same bound before spaces are collapsed: templates indent generously.
_MAX_HEADER_RAW_LENGTH = 400
# Rows read under one header cell, and header cells read in one part.
_MAX_COLUMN_ROWS = 50
_MAX_HEADER_CELLS = 20


def _short_text(element: etree._Element) -> str | None:
    """Return the text of ``element`` when it is short, else None.

    Stops reading at the first sign of a long text: a layout cell contains the
    whole email, and reading it for every cell would cost its size each time.
    """
    pieces = []
    length = 0
    for piece in element.itertext():
        length += len(piece)
        if length > _MAX_HEADER_RAW_LENGTH:
            return None
        pieces.append(piece)
    text = clean_text(" ".join(pieces)).strip()
    return text if len(text) <= _MAX_HEADER_LENGTH else None


def _is_header(text: str, header: re.Pattern[str]) -> bool:
    """Return whether ``text`` is a header: the pattern's match and a colon at most."""
    if len(text) > _MAX_HEADER_LENGTH:
        return False
    match = header.search(text)
    return match is not None and len(match.group()) >= len(text) - 2


def _is_leaf_cell(cell: etree._Element) -> bool:
    return not any(
        isinstance(inner.tag, str) and inner.tag.lower() in _CELL_TAGS
        for inner in cell.iterdescendants()
    )


def _table_rows(row: etree._Element) -> list[etree._Element]:
    """Return the rows of the table that ``row`` belongs to, in order."""
    section = row.getparent()
    if section is None:
        return [row]
    table = section.getparent() if section.tag in ("tbody", "thead", "tfoot") else None
    if table is None or table.tag != "table":
        return [item for item in section if item.tag == "tr"]
    rows = []
    for child in table:
        if child.tag == "tr":
            rows.append(child)
        elif child.tag in ("tbody", "thead", "tfoot"):
            rows.extend(item for item in child if item.tag == "tr")
    return rows


def _cells(row: etree._Element) -> list[etree._Element]:
    return [cell for cell in row if cell.tag in _CELL_TAGS]


class _Rows:
    """The rows of each table, read once however many header cells it has."""

    def __init__(self) -> None:
        self._positions: dict[etree._Element, tuple[list[etree._Element], int]] = {}

    def below(self, row: etree._Element) -> list[etree._Element]:
        if row not in self._positions:
            rows = _table_rows(row)
            for position, item in enumerate(rows):
                self._positions[item] = (rows, position)
        rows, position = self._positions.get(row, ([row], 0))
        return rows[position + 1 : position + 1 + _MAX_COLUMN_ROWS]


def _columns(root: etree._Element, header: re.Pattern[str]) -> list[tuple[str, str]]:
    """Return the cells under column headers that ``header`` matches.

    "TRACKING ID" heading a column with a number in each row below it: the
    text view shows the first number after the header, but not the others.
    """
    found: list[tuple[str, str]] = []
    tables = _Rows()
    headers = 0
    for cell in root.iter(*_CELL_TAGS):
        text = _short_text(cell)
        if not text:
            continue
        if not _is_header(text, header):
            continue
        row = cell.getparent()
        if row is None or row.tag != "tr" or not _is_leaf_cell(cell):
            continue
        headers += 1
        if headers > _MAX_HEADER_CELLS:
            break
        column = _cells(row).index(cell)
        for later in tables.below(row):
            cells = _cells(later)
            if column >= len(cells) or not _is_leaf_cell(cells[column]):
                continue
            value = _element_text(cells[column])
            if value:
                found.append((text, value))
    return found


def read_html(html: str, column_header: re.Pattern[str] | None = None) -> HtmlContent:
    """Return the lines, links, markup and labelled elements of an HTML part.

    With ``column_header``, also the cells under table columns whose header
    cell that pattern matches.
    """
    root = parse_html(html)
    if root is None:
        return HtmlContent()
    lang = root.get("lang") or root.get("xml:lang")
    lines = clean_lines(_visible_text(root))
    columns = []
    # A header cell is a line of its own in the text view: without such a
    # line, no table needs reading.
    if column_header is not None and any(
        _is_header(line, column_header) for line in lines
    ):
        columns = _columns(root, column_header)
    return HtmlContent(
        lines=lines,
        links=_links(root),
        microdata=_microdata(root),
        jsonld=_jsonld(root),
        attributes=_attributes(root),
        columns=columns,
        lang=lang.strip() if lang else None,
    )


_HTML_START = re.compile(
    r"^\s*<(?:!doctype html|html|head|body|table|tr|td|div|p|center|span|img|a|font)\b",
    re.I,
)


def looks_like_html(text: str) -> bool:
    """Return whether a part declared as plain text is HTML."""
    return (
        bool(_HTML_START.match(text))
        or text.count("</td>") + text.count("</div>") + text.count("</p>") >= 3
    )

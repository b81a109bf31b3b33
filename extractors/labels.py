"""The labels layer: a value printed next to a label.

"Order number: 1234", "Sendungsnummer 00340434...", "Tracking number" with
the number in the next table cell (the next line of the normalized text), or
an element whose id or class names its content (``<span id="trackingNumber">``).
A tracking number is read by ``numbers.read_number``: one number, without
the carrier's name before it or the words and dates after it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from extractors import guards, languages
from extractors.carriers import CheckResult, match_formats
from extractors.document import Document, Line
from extractors.links import clean_href
from extractors.model import Candidate, Evidence, FieldName
from extractors.numbers import PrintedNumber, read_number, read_whole_number

EXTRACTOR = "labels"

# What may stand between a label and its value: punctuation, "No.", "is",
# "ID" ("Ordre ID 4711").
_SEPARATOR = re.compile(
    r"(?:\s|[:#.\-\u2013\u2014=*°º]|n[°º]|(?:no|nr|id|is|è|ist|est|es|er|lautet|är|je|é|n)(?!\w))*",
    re.IGNORECASE,
)
_ORDER_VALUE = re.compile(
    r"#?\s*(?P<value>[A-Za-z0-9](?:[A-Za-z0-9_/.-]*[A-Za-z0-9])?)"
)
# One or two words between an order label and a "#" number: the subject
# "Order confirmation #12345".
_WORDS_BEFORE_HASH = re.compile(r"(?:[^\W\d_]+\s+)?[^\W\d_]+\s*(?=#)")
# A table header between a label and its value: a few capitalized words
# ("STATUS", "Carrier"). A value cell such as "will follow" is no header.
_HEADER_CELL = re.compile(r"^(?:[^\W\d_][^\W\d_]*\.?[ ]?){1,4}$")
_LABEL_LINE_SLACK = 25
_ATTRIBUTE_TRACKING = re.compile(
    r"track\w*num|tracking|parcel-?num|waybill|sendungsnummer", re.I
)
_ATTRIBUTE_ORDER = re.compile(r"order-?(?:num|id|ref)", re.I)
_ORDER_PARAMETER = re.compile(r"order[-_]?(?:id|number|num|no|nr|ref)", re.I)
# Links read for an order parameter: the first ones carry the order's own.
_MAX_ORDER_LINKS = 200


@dataclass(frozen=True)
class LabelledValue:
    """The raw value after a label, with the label and where it was found."""

    label: str
    # The label's language, or None for a label that several languages use.
    language: str | None
    value: str
    line: Line
    line_number: int
    next_cell: bool


# Reads the value that starts at a position of a line; None when none does.
Reader = Callable[[str, int], str | None]


def _is_header_cell(text: str) -> bool:
    return bool(_HEADER_CELL.match(text)) and all(
        word[0].isupper() for word in text.split()
    )


def _value_after(
    lines: list[Line], index: int, start: int, end: int, read: Reader
) -> tuple[str, bool] | None:
    line = lines[index]
    rest_start = _SEPARATOR.match(line.text, end)
    position = rest_start.end() if rest_start else end
    if position < len(line.text):
        value = read(line.text, position)
        return (value, False) if value else None
    if start > _LABEL_LINE_SLACK:
        return None
    # The label ends its line: the value is in the next cell. The rows
    # further down a column under a header cell are read from the table.
    for offset, later in enumerate(lines[index + 1 : index + 3]):
        if later.location != line.location:
            return None
        value = read(later.text, 0)
        if value:
            return value, True
        if offset == 0 and _is_header_cell(later.text):
            continue
        return None
    return None


def labelled_values(
    lines: list[Line], list_name: str, read: Reader
) -> Iterator[LabelledValue]:
    """Yield each value that follows a label of ``list_name``."""
    pattern = languages.list_pattern(list_name)
    for index, line in enumerate(lines):
        position = 0
        while match := pattern.search(line.text, position):
            found = _value_after(lines, index, match.start(), match.end(), read)
            # A short label ("your order") may hide a longer one that starts
            # inside it ("order with the reference"): try again one further.
            position = match.start() + 1 if found is None else match.end()
            if found is None:
                continue
            spoken = languages.languages_of(list_name, match.group("phrase"))
            yield LabelledValue(
                label=match.group("phrase"),
                language=spoken[0] if len(spoken) == 1 else None,
                value=found[0],
                line=line,
                line_number=index,
                next_cell=found[1],
            )


def all_lines(document: Document) -> list[Line]:
    """Return the subject as the first line, then the document's lines."""
    return [Line(document.subject, "subject"), *document.lines]


def _read_tracking(text: str, position: int) -> str | None:
    found = read_number(text, position)
    return text[position : found.end] if found else None


def _label_language(item: LabelledValue) -> str:
    return f"a {item.language}" if item.language else "a"


def _tracking_candidate(
    number: PrintedNumber,
    evidence: Evidence,
    language: str | None,
    line_number: int = 0,
) -> Candidate:
    return Candidate(
        field=FieldName.TRACKING_NUMBER,
        value=number.number,
        confidence=0.85,
        evidence=evidence,
        carrier=number.carrier,
        language=language,
        line_number=line_number,
    )


def tracking_candidates(document: Document) -> list[Candidate]:
    """Return tracking-number candidates next to tracking labels."""
    found = _labelled_numbers(document, "tracking_labels", "tracking label")
    # A phrase that names the parcel ("Your parcel") also precedes other
    # words, so a number that fits a format and fails its check digit is not
    # taken after one.
    for candidate in _labelled_numbers(
        document, "parcel_labels", "phrase that names the parcel"
    ):
        if not _fails_its_check(candidate.value):
            candidate.weak = True
            found.append(candidate)
    found.extend(_column_candidates(document))
    found.extend(_attribute_candidates(document, _ATTRIBUTE_TRACKING, tracking=True))
    return found


def _labelled_numbers(document: Document, list_name: str, what: str) -> list[Candidate]:
    found = []
    for item in labelled_values(all_lines(document), list_name, _read_tracking):
        number = read_number(item.value)
        if number is None:
            continue
        if list_name == "parcel_labels" and _numbered_with_hash(item):
            # "Your Shipment #000000077": a shop's shipment id, not a parcel's.
            continue
        where = "next cell" if item.next_cell else "same line"
        evidence = Evidence(
            EXTRACTOR,
            item.line.location,
            f"{item.label!r} then {item.value!r}",
            f"after {_label_language(item)} {what} ({where})",
        )
        found.append(
            _tracking_candidate(number, evidence, item.language, item.line_number)
        )
    return found


def _numbered_with_hash(item: LabelledValue) -> bool:
    text = item.line.text
    position = text.find(item.value)
    return position > 0 and text[:position].rstrip().endswith("#")


def _fails_its_check(number: str) -> bool:
    checks = {match.check for match in match_formats(number)}
    return CheckResult.FAILED in checks and CheckResult.PASSED not in checks


def _column_candidates(document: Document) -> list[Candidate]:
    """Return the numbers in the cells under a tracking-number column header."""
    found = []
    for header, text in document.tracking_columns:
        number = read_whole_number(text)
        if number is None:
            continue
        label = languages.list_pattern("tracking_labels").search(header)
        spoken = languages.languages_of(
            "tracking_labels", label.group("phrase") if label else header
        )
        evidence = Evidence(
            EXTRACTOR,
            "html table",
            f"{header!r} above {text!r}",
            "in a table column under a tracking label",
        )
        found.append(
            _tracking_candidate(
                number, evidence, spoken[0] if len(spoken) == 1 else None
            )
        )
    return found


def _order_value_ok(value: str, line: str) -> bool:
    match = _ORDER_VALUE.match(value)
    value = match.group("value") if match else value
    if not 3 <= len(value) <= 40 or guards.is_date_or_time(value):
        return False
    if any(char.isdigit() for char in value):
        return True
    # A code of capitals only counts inside mixed-case text, where it
    # cannot be a word of a heading written in capitals.
    return (
        value.isalpha()
        and value.isupper()
        and len(value) >= 5
        and (any(char.islower() for char in line))
    )


def _read_order(text: str, position: int) -> str | None:
    match = _ORDER_VALUE.match(text, position)
    if match and match.group().strip() and _order_value_ok(match.group(), text):
        return match.group()
    words = _WORDS_BEFORE_HASH.match(text, position)
    if words is None:
        return None
    match = _ORDER_VALUE.match(text, words.end())
    if match is None or not any(char.isdigit() for char in match.group("value")):
        return None
    return match.group() if _order_value_ok(match.group(), text) else None


def order_candidates(document: Document) -> list[Candidate]:
    """Return order-number candidates next to order labels."""
    found = []
    for item in labelled_values(all_lines(document), "order_labels", _read_order):
        match = _ORDER_VALUE.match(item.value)
        value = match.group("value") if match else item.value
        if value.isalpha() and (
            value.casefold() in languages.kind_words()
            or value.casefold() in languages.phrases("order_headings")
        ):
            # "ORDER SHIPPED", "ORDER SUMMARY": a heading, not a code.
            continue
        confidence = {"subject": 0.7}.get(item.line.location, 0.8)
        if item.line.location.startswith("html"):
            confidence = 0.85
        found.append(
            Candidate(
                field=FieldName.ORDER_NUMBER,
                value=value,
                confidence=confidence,
                evidence=Evidence(
                    EXTRACTOR,
                    item.line.location,
                    f"{item.label!r} then {item.value!r}",
                    f"after {_label_language(item)} order label",
                ),
                language=item.language,
                line_number=item.line_number,
            )
        )
    found.extend(_attribute_candidates(document, _ATTRIBUTE_ORDER, tracking=False))
    found.extend(_link_order_candidates(document))
    return found


def _site_of(domain: str) -> str:
    """Return the site a mail domain belongs to: "shop.example" of "mail.shop.example".

    Under a country's second level ("shop.co.uk", "shop.com.au") the site
    keeps three labels.
    """
    labels = domain.lower().rstrip(".").split(".")
    second_level = len(labels) >= 3 and len(labels[-1]) == 2 and len(labels[-2]) <= 3
    return ".".join(labels[-3:] if second_level else labels[-2:])


def _on_domain(host: str, domain: str) -> bool:
    host = host.lower().rstrip(".")
    domain = domain.lower()
    return bool(domain) and (host == domain or host.endswith("." + domain))


def _link_order_candidates(document: Document) -> list[Candidate]:
    """Return order numbers in the query of links to the sender's own site.

    "Your invoice: https://www.amazon.com/...?orderID=111-4396615-4512227":
    the weakest order evidence, taken when no label names the order.
    """
    sender = document.sender
    if sender is None or not sender.domain:
        return []
    found = []
    for link in document.links[:_MAX_ORDER_LINKS]:
        parts = urlsplit(clean_href(link.href))
        if not _on_domain(parts.hostname or "", _site_of(sender.domain)):
            continue
        for name, value in parse_qsl(parts.query):
            if not _ORDER_PARAMETER.fullmatch(name) or not _order_value_ok(value, ""):
                continue
            if not any(char.isdigit() for char in value):
                continue
            evidence = Evidence(
                EXTRACTOR,
                link.location,
                f"{name}={value}",
                "in an order parameter of a link to the sender's site",
            )
            found.append(
                Candidate(
                    field=FieldName.ORDER_NUMBER,
                    value=value,
                    confidence=0.6,
                    evidence=evidence,
                )
            )
    return found


def _attribute_candidates(
    document: Document, hint: re.Pattern[str], tracking: bool
) -> list[Candidate]:
    found = []
    for attribute, text in document.attributes:
        if not hint.search(attribute) or not text:
            continue
        carrier = None
        if tracking:
            number = read_whole_number(text)
            if number is None:
                continue
            value, carrier = number.number, number.carrier
        else:
            match = _ORDER_VALUE.fullmatch(text)
            if match is None or not _order_value_ok(match.group("value"), text.lower()):
                continue
            value = match.group("value")
        found.append(
            Candidate(
                field=FieldName.TRACKING_NUMBER if tracking else FieldName.ORDER_NUMBER,
                value=value,
                confidence=0.8,
                evidence=Evidence(
                    EXTRACTOR,
                    "html attribute",
                    f"{attribute!r}: {text!r}",
                    "in an element whose id or class names it",
                ),
                carrier=carrier,
            )
        )
    return found

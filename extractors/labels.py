"""The labels layer: a value printed next to a label.

"Order number: 1234", "Sendungsnummer 00340434...", "Tracking number" with
the number in the next table cell (the next line of the normalized text), or
an element whose id or class names its content (``<span id="trackingNumber">``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from extractors import guards, languages
from extractors.document import Document, Line
from extractors.model import Candidate, Evidence, FieldName

EXTRACTOR = "labels"

# What may stand between a label and its value: punctuation, "No.", "is".
_SEPARATOR = re.compile(
    r"(?:\s|[:#.\-\u2013\u2014=*°º]|n[°º]|(?:no|nr|is|è|ist|est|es|er|lautet|är|je|é|n)(?!\w))*",
    re.IGNORECASE,
)
# Groups of letters and digits, each with a digit, after an optional prefix.
_TRACKING_GROUP = r"[A-Za-z0-9]*\d[A-Za-z0-9]*"
_TRACKING_VALUE = re.compile(
    rf"(?:[A-Za-z]{{1,4}}[ -])?{_TRACKING_GROUP}(?:[ -]{_TRACKING_GROUP})*"
)
_ORDER_VALUE = re.compile(
    r"#?\s*(?P<value>[A-Za-z0-9](?:[A-Za-z0-9_/.-]*[A-Za-z0-9])?)"
)
# A table header between a label and its value: a few words, no digits.
_HEADER_CELL = re.compile(r"^[^\d]{1,30}$")
_LABEL_LINE_SLACK = 25
_ATTRIBUTE_TRACKING = re.compile(
    r"track\w*num|tracking|parcel-?num|waybill|sendungsnummer", re.I
)
_ATTRIBUTE_ORDER = re.compile(r"order-?(?:num|id|ref)", re.I)


@dataclass(frozen=True)
class LabelledValue:
    """The raw value after a label, with the label and where it was found."""

    label: str
    language: str
    value: str
    line: Line
    line_number: int
    next_cell: bool


Accept = Callable[[str, str], bool]


def _value_after(
    lines: list[Line],
    index: int,
    start: int,
    end: int,
    value: re.Pattern[str],
    accept: Accept,
) -> tuple[str, bool] | None:
    line = lines[index]
    rest_start = _SEPARATOR.match(line.text, end)
    position = rest_start.end() if rest_start else end
    match = value.match(line.text, position)
    if match and match.group().strip():
        if accept(match.group(), line.text):
            return match.group(), False
        return None
    if position < len(line.text) or start > _LABEL_LINE_SLACK:
        return None
    # The label ends its line: the value is in the next cell.
    # TODO(table columns in the text view): values in later rows under a
    # header cell ("TRACKING ID" above several rows) are not reached.
    for offset, later in enumerate(lines[index + 1 : index + 3]):
        if later.location != line.location:
            return None
        match = value.match(later.text)
        if match and match.group().strip():
            return (match.group(), True) if accept(match.group(), later.text) else None
        if offset == 0 and _HEADER_CELL.match(later.text):
            continue
        return None
    return None


def labelled_values(
    lines: list[Line], list_name: str, value: re.Pattern[str], accept: Accept
) -> Iterator[LabelledValue]:
    """Yield each value that follows a label of ``list_name``."""
    pattern = languages.list_pattern(list_name)
    for index, line in enumerate(lines):
        position = 0
        while match := pattern.search(line.text, position):
            found = _value_after(
                lines, index, match.start(), match.end(), value, accept
            )
            # A short label ("your order") may hide a longer one that starts
            # inside it ("order with the reference"): try again one further.
            position = match.start() + 1 if found is None else match.end()
            if found is None:
                continue
            phrase = languages.lookup(list_name, match.group("phrase"))
            yield LabelledValue(
                label=match.group("phrase"),
                language=phrase.language if phrase else "",
                value=found[0],
                line=line,
                line_number=index,
                next_cell=found[1],
            )


def all_lines(document: Document) -> list[Line]:
    """Return the subject as the first line, then the document's lines."""
    return [Line(document.subject, "subject"), *document.lines]


def normalize_tracking(raw: str) -> str:
    """Return ``raw`` upper case without spaces and hyphens."""
    return re.sub(r"[\s-]", "", raw).upper()


def tracking_candidates(document: Document) -> list[Candidate]:
    """Return tracking-number candidates next to tracking labels."""
    found = []
    for item in labelled_values(
        all_lines(document), "tracking_labels", _TRACKING_VALUE, _tracking_value_ok
    ):
        number = normalize_tracking(item.value)
        where = "next cell" if item.next_cell else "same line"
        found.append(
            Candidate(
                field=FieldName.TRACKING_NUMBER,
                value=number,
                confidence=0.85,
                evidence=Evidence(
                    EXTRACTOR,
                    item.line.location,
                    f"{item.label!r} then {item.value!r}",
                    f"after a {item.language} tracking label ({where})",
                ),
                language=item.language or None,
                line_number=item.line_number,
            )
        )
    found.extend(_attribute_candidates(document, _ATTRIBUTE_TRACKING, tracking=True))
    return found


def _tracking_value_ok(value: str, line: str) -> bool:
    number = normalize_tracking(value)
    return 6 <= len(number) <= 40 and not guards.is_date_or_time(value)


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


def order_candidates(document: Document) -> list[Candidate]:
    """Return order-number candidates next to order labels."""
    found = []
    for item in labelled_values(
        all_lines(document), "order_labels", _ORDER_VALUE, _order_value_ok
    ):
        match = _ORDER_VALUE.match(item.value)
        value = match.group("value") if match else item.value
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
                    f"after a {item.language} order label",
                ),
                language=item.language or None,
                line_number=item.line_number,
            )
        )
    found.extend(_attribute_candidates(document, _ATTRIBUTE_ORDER, tracking=False))
    return found


def _attribute_candidates(
    document: Document, hint: re.Pattern[str], tracking: bool
) -> list[Candidate]:
    found = []
    for attribute, text in document.attributes:
        if not hint.search(attribute) or not text:
            continue
        if tracking:
            value = normalize_tracking(text)
            if not _TRACKING_VALUE.fullmatch(text) or not 6 <= len(value) <= 40:
                continue
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
            )
        )
    return found

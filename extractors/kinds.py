"""Kind phrases: what an email is about, from its subject and body.

Phrases are data (``data/languages.toml``). A body line that is only a stage
name next to other stage names is a progress bar ("Ordered / Shipped / Out
for delivery / Delivered") and says nothing about this email. An announced
delivery date equal to the day the email was sent makes a shipping email an
out-for-delivery one.
"""

from __future__ import annotations

import re
from datetime import date

from extractors import languages
from extractors.document import Document, Line
from extractors.model import Candidate, Evidence, FieldName, Kind

EXTRACTOR = "kind phrases"
_PROGRESS_WINDOW = 3
_DAY = re.compile(r"(?<!\d)(?P<day>[0-3]?\d)(?:st|nd|rd|th|\.)?(?!\d)")


def _standalone(line: Line) -> str | None:
    # A stage name alone on its line; a whole status sentence such as
    # "Arriving today" is a body phrase and stays.
    text = re.sub(r"[\s:!.]+$", "", line.text).casefold()
    if text in languages.kind_phrases("body"):
        return None
    return text if text in languages.kind_phrases("subject") else None


def _progress_bar_lines(lines: list[Line]) -> set[int]:
    stages = [i for i, line in enumerate(lines) if _standalone(line)]
    return {
        i for i in stages if any(0 < abs(i - j) <= _PROGRESS_WINDOW for j in stages)
    }


def _phrase_candidates(
    text: str, place: str, location: str, line_number: int = 0
) -> list[Candidate]:
    found = []
    table = languages.kind_phrases(place)
    for match in languages.kind_pattern(place).finditer(text):
        for phrase in table[match.group("phrase").casefold()]:
            found.append(
                Candidate(
                    field=FieldName.KIND,
                    value=phrase.meaning,
                    confidence=0.8 if place == "subject" else 0.6,
                    evidence=Evidence(
                        EXTRACTOR,
                        location,
                        match.group("phrase"),
                        f"{phrase.language} {place} phrase",
                    ),
                    language=phrase.language,
                    line_number=line_number,
                )
            )
    return found


def candidates(document: Document) -> list[Candidate]:
    """Return kind candidates from the subject and body phrases."""
    found = _phrase_candidates(document.subject, "subject", "subject")
    progress = _progress_bar_lines(document.lines)
    for index, line in enumerate(document.lines):
        if index in progress:
            continue
        found.extend(_phrase_candidates(line.text, "body", line.location, index + 1))
    arrival = _arrival_today(document)
    if arrival is not None:
        found.append(arrival)
    return found


def _month_table() -> dict[str, int]:
    table: dict[str, int] = {}
    for data in languages.languages().values():
        for number, name in enumerate(data.get("months", []), start=1):
            table.setdefault(name.casefold(), number)
            table.setdefault(name.casefold()[:3], number)
    return table


def _parse_day(text: str, year: int) -> date | None:
    """Return the date of "Friday, December 3" or "3 December 2021" in ``text``."""
    months = _month_table()
    words = re.findall(r"[^\W\d_]+", text.casefold())
    month = next((months[w] for w in words if w in months), None)
    day = _DAY.search(text)
    if month is None or day is None:
        return None
    try:
        return date(year, month, int(day.group("day")))
    except ValueError:
        return None


def _arrival_today(document: Document) -> Candidate | None:
    if document.date is None:
        return None
    sent = document.date.date()
    pattern = languages.list_pattern("arrival_labels")
    lines = [Line(document.subject, "subject"), *document.lines]
    for index, line in enumerate(lines):
        match = pattern.search(line.text)
        if match is None:
            continue
        following = lines[index + 1].text if index + 1 < len(lines) else ""
        text = line.text[match.end() :].strip(" :") or following
        announced = _parse_day(text[:60], sent.year)
        if announced == sent:
            return Candidate(
                field=FieldName.KIND,
                value=Kind.OUT_FOR_DELIVERY,
                confidence=0.7,
                evidence=Evidence(
                    EXTRACTOR,
                    line.location,
                    f"{match.group('phrase')} {text[:40]}",
                    "the announced delivery day is the day the email was sent",
                ),
            )
    return None

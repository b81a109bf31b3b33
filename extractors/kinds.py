"""Kind phrases: what an email is about, from its subject and body.

Phrases are data (``data/languages.toml``). A body line that is only a stage
name next to other stage names is a progress bar ("Ordered / Shipped / Out
for delivery / Delivered") and says nothing about this email. A phrase after
a condition word of its language in the same sentence ("We will write to you
once your order has shipped", "If your parcel was delivered but...") says
what may happen, not what did: it is kept as a rejected candidate. An announced
delivery date equal to the day the email was sent makes a shipping email an
out-for-delivery one.
"""

from __future__ import annotations

import re
from datetime import date
from functools import cache

from extractors import languages
from extractors.document import Document, Line
from extractors.model import Candidate, Evidence, FieldName, Kind

EXTRACTOR = "kind phrases"
_PROGRESS_WINDOW = 3
_DAY = re.compile(r"(?<!\d)(?P<day>[0-3]?\d)(?:st|nd|rd|th|\.)?(?!\d)")
# Sentence ends. A condition word counts only within the sentence of its
# phrase and at most this many characters before it, so that a long line of
# many phrases costs linear time.
_SENTENCE_END = re.compile(r"[.!?;](?:\s|$)")
_OPEN_ENDING = re.compile(r"[^.!?:;]$")
_MAX_SENTENCE = 300


def _standalone(line: Line) -> str | None:
    # A stage name alone on its line; a whole status sentence such as
    # "Arriving today" is a body phrase and stays.
    text = re.sub(r"[\s:!.]+$", "", line.text).casefold()
    if text in languages.kind_phrases("body"):
        return None
    return text if text in languages.kind_phrases("subject") else None


def _progress_bar_lines(lines: list[Line]) -> set[int]:
    # Each stage line is compared with its neighbours in the sorted list
    # only, so that many stage lines cost linear time.
    stages = [i for i, line in enumerate(lines) if _standalone(line)]
    found = set()
    for position, index in enumerate(stages):
        neighbours = stages[max(0, position - 1) : position + 2]
        if any(0 < abs(index - other) <= _PROGRESS_WINDOW for other in neighbours):
            found.add(index)
    return found


def _sentence_before(text: str, start: int, previous: str) -> str:
    """Return the part of the sentence that ends at ``text[start]``.

    A sentence that a plain-text part wraps onto the next line starts on the
    line before, when that line does not end the sentence.
    """
    window = text[max(0, start - _MAX_SENTENCE) : start]
    ends = list(_SENTENCE_END.finditer(window))
    if ends:
        return window[ends[-1].end() :]
    if start < _MAX_SENTENCE and previous and _OPEN_ENDING.search(previous):
        opening = previous[-(_MAX_SENTENCE - start) :]
        ends = list(_SENTENCE_END.finditer(opening))
        return f"{opening[ends[-1].end() :] if ends else opening} {window}"
    return window


def _condition(phrases: list[languages.Phrase], sentence: str) -> str | None:
    codes = tuple(sorted({phrase.language for phrase in phrases}))
    pattern = languages.condition_pattern(codes)
    match = pattern.search(sentence) if pattern else None
    return match.group() if match else None


def _phrase_candidates(
    line: Line, place: str, line_number: int = 0, previous: str = ""
) -> list[Candidate]:
    found = []
    table = languages.kind_phrases(place)
    for match in languages.kind_pattern(place).finditer(line.text):
        phrases = table[match.group("phrase").casefold()]
        spoken = {phrase.language for phrase in phrases}
        sentence = _sentence_before(line.text, match.start(), previous)
        condition = _condition(phrases, sentence)
        for phrase in phrases:
            candidate = Candidate(
                field=FieldName.KIND,
                value=phrase.meaning,
                confidence=0.8 if place == "subject" else 0.6,
                evidence=Evidence(
                    EXTRACTOR,
                    line.location,
                    match.group("phrase"),
                    f"{phrase.language} {place} phrase",
                ),
                # A phrase of several languages is evidence for none of them.
                language=phrase.language if len(spoken) == 1 else None,
                line_number=line_number,
            )
            if condition is not None:
                candidate.accepted = False
                candidate.verdict = (
                    f"rejected: after {condition!r}, it says what may happen"
                )
            found.append(candidate)
    return found


def _line_wrapped_before(lines: list[Line], index: int) -> str:
    # Plain text wraps sentences onto the next line; HTML lines are blocks.
    line = lines[index]
    if index == 0 or not line.location.startswith("text"):
        return ""
    before = lines[index - 1]
    return before.text if before.location == line.location else ""


def candidates(document: Document) -> list[Candidate]:
    """Return kind candidates from the subject and body phrases."""
    found = _phrase_candidates(Line(document.subject, "subject"), "subject")
    progress = _progress_bar_lines(document.lines)
    for index, line in enumerate(document.lines):
        if index in progress:
            continue
        previous = _line_wrapped_before(document.lines, index)
        found.extend(_phrase_candidates(line, "body", index + 1, previous))
    arrival = _arrival_today(document)
    if arrival is not None:
        found.append(arrival)
    return found


@cache
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
                line_number=index,
            )
    return None

"""The patterns layer: tracking-number formats found anywhere in the text.

Numbers may be printed in groups ("1Z 999 AA1 01 2345 6784"), so runs of
capital-and-digit groups are tried joined, longest first. A number found by
pattern alone is a candidate only if its format's check digit passes.

Phone numbers, customer numbers and company ids look like the formats that
are not distinctive (10 digits for DHL Express, 12 for FedEx). Their check
digits let many of those through: one random number in seven for DHL
Express's mod 7, about one in ten for the mod 10 and mod 11 formats, and one
in five for USPS's two 20-digit variants. So a number of such a format must
be printed as a number of its own, not a part of "DE-1234567891" and not
joined from the groups of "0800 974650". Its carrier must also be named on
its line or the line before. The resolver asks for more before it accepts a
pattern number (see its module docstring).
"""

from __future__ import annotations

import re

from extractors import guards, languages
from extractors.carriers import (
    CheckResult,
    FormatMatch,
    carrier_for_domain,
    find_carrier_names,
    match_formats,
)
from extractors.document import Document, Line
from extractors.labels import all_lines
from extractors.model import Candidate, Evidence, FieldName

EXTRACTOR = "patterns"

_RUN = re.compile(r"(?<![A-Za-z0-9])[A-Z0-9]+(?:[ -][A-Z0-9]+)*(?![A-Za-z0-9])")
_GROUP = re.compile(r"[A-Z0-9]+")
_GROUP_SEPARATOR = re.compile(r"[ -]")
_MAX_GROUPS = 8
# A run of more groups than this is a table of figures or filler, not a
# printed number: only its groups that are long enough to be a number on
# their own are tried, one format test each.
_MAX_RUN_GROUPS = 24
_MIN_LENGTH = 8
_MAX_LENGTH = 40


def _spans(run: str) -> list[tuple[int, int, str]]:
    """Return (start, end, joined) of the longest number at each group of ``run``."""
    groups = [(m.start(), m.end()) for m in _GROUP.finditer(run)]
    widest = _MAX_GROUPS
    if len(groups) > _MAX_RUN_GROUPS:
        widest = 1
        groups = [(start, end) for start, end in groups if end - start >= _MIN_LENGTH]
    found = []
    i = 0
    while i < len(groups):
        best = None
        for j in range(min(len(groups), i + widest), i, -1):
            start, end = groups[i][0], groups[j - 1][1]
            # Two groups of a run are one separator character apart.
            if not _MIN_LENGTH <= end - start - (j - i - 1) <= _MAX_LENGTH:
                continue
            joined = _GROUP_SEPARATOR.sub("", run[start:end])
            if match_formats(joined):
                best = (j, (start, end, joined))
                break
        if best is None:
            i += 1
            continue
        found.append(best[1])
        i = best[0]
    return found


def _rejected_reason(
    line: Line,
    previous: Line | None,
    start: int,
    end: int,
    number: str,
    passed: list[FormatMatch],
) -> str | None:
    text = line.text
    if guards.is_iban(number):
        return "an IBAN"
    if guards.is_price(text, start, end):
        return "a price"
    if guards.is_phone(text, start):
        return "a phone number"
    label = guards.other_label_before(text, start)
    # "Your order 1Z999AA10123456784 has shipped": a distinctive number
    # after an order label is the shipment's, not the order's.
    distinctive = any(m.format.distinctive for m in passed)
    if label and not (distinctive and _is_order_label(label)):
        return f"labelled {label!r}"
    label = guards.label_cell_before(text, start, previous.text if previous else "")
    if label:
        return f"labelled {label!r} in the cell before"
    return None


def _is_order_label(label: str) -> bool:
    return " ".join(label.split()).casefold() in languages.phrases("order_labels")


def _standalone(text: str, start: int, end: int, number: str) -> bool:
    """Return whether ``text[start:end]`` is one token, not a part of a longer one."""
    if text[start:end] != number:
        return False
    before = text[max(0, start - 2) : start]
    after = text[end : end + 2]
    glued_before = len(before) == 2 and before[1] == "-" and before[0].isalnum()
    glued_after = len(after) == 2 and after[0] == "-" and after[1].isalnum()
    return not (glued_before or glued_after)


def _weak_reason(
    line: Line,
    start: int,
    end: int,
    number: str,
    passed: list[FormatMatch],
    nearby: set[str],
) -> str | None:
    """Return why a number of non-distinctive formats only is not taken.

    ``nearby`` are the carriers named on the number's line and the line before.
    """
    if not _standalone(line.text, start, end, number):
        return "part of a longer number, in a format that is not distinctive"
    if not any(m.carrier in nearby for m in passed):
        return "its carrier is not named on its line or the line before"
    return None


class _NamesNearby:
    """The carriers named on a line and the line before, looked up once per line."""

    def __init__(self, lines: list[Line]) -> None:
        self._lines = lines
        self._named: dict[int, set[str]] = {}

    def _on(self, index: int) -> set[str]:
        if index not in self._named:
            text = self._lines[index].text
            self._named[index] = {slug for slug, _, _ in find_carrier_names(text)}
        return self._named[index]

    def around(self, index: int) -> set[str]:
        lines = self._lines
        named = set(self._on(index))
        if index > 0 and lines[index - 1].location == lines[index].location:
            named |= self._on(index - 1)
        return named


def tracking_candidates(document: Document) -> list[Candidate]:
    """Return numbers that fit a carrier format and pass its check digit."""
    found = []
    lines = all_lines(document)
    nearby = _NamesNearby(lines)
    for index, line in enumerate(lines):
        previous = lines[index - 1] if index > 0 else None
        if previous is not None and previous.location != line.location:
            previous = None
        for run in _RUN.finditer(line.text):
            if not any(char.isdigit() for char in run.group()):
                continue
            for span_start, span_end, number in _spans(run.group()):
                start = run.start() + span_start
                end = run.start() + span_end
                matches = match_formats(number)
                passed = [m for m in matches if m.check == CheckResult.PASSED]
                if not passed:
                    continue
                reason = _rejected_reason(line, previous, start, end, number, passed)
                if reason is None and not any(m.format.distinctive for m in passed):
                    names = nearby.around(index)
                    reason = _weak_reason(line, start, end, number, passed, names)
                printed = line.text[start:end]
                candidate = _candidate(line, printed, number, passed, reason)
                candidate.line_number = index
                found.append(candidate)
    return found


def _candidate(
    line: Line,
    printed: str,
    number: str,
    passed: list[FormatMatch],
    rejected: str | None,
) -> Candidate:
    formats = ", ".join(f"{m.carrier} {m.format.name}" for m in passed)
    candidate = Candidate(
        field=FieldName.TRACKING_NUMBER,
        value=number,
        confidence=0.6,
        evidence=Evidence(
            EXTRACTOR,
            line.location,
            printed,
            f"fits {formats} and passes its check digit",
        ),
        carrier=passed[0].carrier if len({m.carrier for m in passed}) == 1 else None,
    )
    if rejected:
        candidate.accepted = False
        candidate.verdict = f"rejected: {rejected}"
    return candidate


def sender_subject_candidates(document: Document) -> list[Candidate]:
    """Return numbers of the sending carrier's formats in its own subject line.

    A carrier's notification names the parcel in its subject ("Your shipment
    was delivered 885814254426"); there the carrier itself calls it the
    tracking number, as a label would, so the check digit is not required.
    """
    sender = document.sender
    carrier = carrier_for_domain(sender.domain) if sender is not None else None
    if carrier is None:
        return []
    found = []
    for run in _RUN.finditer(document.subject):
        number = _GROUP_SEPARATOR.sub("", run.group())
        if any(m.carrier == carrier for m in match_formats(number)):
            found.append(
                Candidate(
                    field=FieldName.TRACKING_NUMBER,
                    value=number,
                    confidence=0.7,
                    evidence=Evidence(
                        "labels",
                        "subject",
                        run.group(),
                        f"fits a {carrier} format in {carrier}'s own subject line",
                    ),
                    carrier=carrier,
                )
            )
    return found

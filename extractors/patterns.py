"""The patterns layer: tracking-number formats found anywhere in the text.

Numbers may be printed in groups ("1Z 999 AA1 01 2345 6784"), so runs of
capital-and-digit groups are tried joined, longest first. A number found by
pattern alone is a candidate only if its format's check digit passes; the
resolver asks for more (a distinctive format, or the carrier named in the
email) before it accepts one.
"""

from __future__ import annotations

import re

from extractors import guards
from extractors.carriers import (
    CheckResult,
    FormatMatch,
    carrier_for_domain,
    match_formats,
)
from extractors.document import Document, Line
from extractors.labels import all_lines
from extractors.model import Candidate, Evidence, FieldName

EXTRACTOR = "patterns"

_RUN = re.compile(r"(?<![A-Za-z0-9])[A-Z0-9]+(?:[ -][A-Z0-9]+)*(?![A-Za-z0-9])")
_GROUP_SEPARATOR = re.compile(r"[ -]")
_MAX_GROUPS = 8
_MIN_LENGTH = 8
_MAX_LENGTH = 40


def _spans(run: str) -> list[tuple[int, int, str]]:
    """Return (start, end, joined) of the longest number at each group of ``run``."""
    groups = [(m.start(), m.end()) for m in re.finditer(r"[A-Z0-9]+", run)]
    found = []
    i = 0
    while i < len(groups):
        best = None
        for j in range(min(len(groups), i + _MAX_GROUPS), i, -1):
            start, end = groups[i][0], groups[j - 1][1]
            joined = _GROUP_SEPARATOR.sub("", run[start:end])
            if _MIN_LENGTH <= len(joined) <= _MAX_LENGTH and match_formats(joined):
                best = (j, (start, end, joined))
                break
        if best is None:
            i += 1
            continue
        found.append(best[1])
        i = best[0]
    return found


def _rejected_reason(line: Line, start: int, end: int, number: str) -> str | None:
    text = line.text
    if guards.is_iban(number):
        return "an IBAN"
    if guards.is_price(text, start, end):
        return "a price"
    if guards.is_phone(text, start):
        return "a phone number"
    label = guards.other_label_before(text, start)
    if label:
        return f"labelled {label!r}"
    return None


def tracking_candidates(document: Document) -> list[Candidate]:
    """Return numbers that fit a carrier format and pass its check digit."""
    found = []
    for line in all_lines(document):
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
                reason = _rejected_reason(line, start, end, number)
                found.append(
                    _candidate(line, line.text[start:end], number, passed, reason)
                )
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

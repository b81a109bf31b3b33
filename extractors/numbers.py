"""Reading the one tracking number printed at a place in a line.

Labels, elements named for their content and schema.org values all point at
a place where a tracking number should start. What follows there is rarely
the number alone: the carrier's name may come first ("UPS 1Z999AA1..."),
the number may be printed in groups ("1Z 999 AA1 01 2345 6784"), and other
words or numbers may follow on the same line ("... 12.03.2024",
"... 2 Pakete"). ``read_number`` takes the groups that make up one number
and nothing after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from extractors.carriers import (
    carrier_for_number,
    carrier_name_at,
    check_rank,
    match_formats,
)

MIN_LENGTH = 6
MAX_LENGTH = 40
_MAX_GROUPS = 8
_GROUP = re.compile(r"[A-Za-z0-9]+")
# Separators between a carrier's name and its number: "UPS: 1Z...".
_AFTER_NAME = re.compile(r"[\s:#\-\u2013]*")
# A group followed by one of these and a letter or digit is part of a date,
# an amount or a URL ("12.03.2024", "19,99", "dhl.de/x"), not of a number.
_INSIDE_TOKEN = frozenset(".,:/@")
_GROUP_SEPARATORS = frozenset(" -")
# A number printed in groups opens with a digit or with its format's
# letters, which are at most this many ("JJD", "RR", "TBA").
_MAX_LETTER_PREFIX = 4
# Capitals printed apart from the digits of a number in no known format.
_MAX_SPACED_PREFIX = 2
# A number printed in groups of at most this many characters, three or more
# groups in all, is read whole unless a shorter join passes a check digit.
_MAX_PRINTED_GROUP = 6
_PASSED_RANK = 3
# Groups after the first one that are shorter than this join the number
# only when the joined number fits a carrier's format: "2" in "... 2 Pakete"
# is a quantity.
_MIN_LOOSE_GROUP = 3


@dataclass(frozen=True)
class PrintedNumber:
    """A tracking number as printed, normalized, and the carrier named before it."""

    printed: str
    number: str
    # The carrier whose name the email printed right before the number.
    carrier: str | None
    start: int
    end: int


def _groups(text: str, position: int) -> list[tuple[int, int]]:
    groups: list[tuple[int, int]] = []
    length = 0
    while len(groups) < _MAX_GROUPS:
        match = _GROUP.match(text, position)
        if match is None:
            break
        end = match.end()
        follows = text[end : end + 2]
        if len(follows) == 2 and follows[0] in _INSIDE_TOKEN and follows[1].isalnum():
            break
        length += end - match.start()
        if length > MAX_LENGTH:
            break
        groups.append((match.start(), end))
        if len(follows) < 2 or follows[0] not in _GROUP_SEPARATORS:
            break
        if not follows[1].isalnum():
            break
        position = end + 1
    return groups


def _joined(text: str, groups: list[tuple[int, int]]) -> str:
    return "".join(text[start:end] for start, end in groups).upper()


def _best_prefix(text: str, groups: list[tuple[int, int]]) -> int:
    """Return how many groups make up the number, or 0 when they make none.

    A first group that is a whole number of some format is the number. Else
    the groups whose join fits a format with the best check make the number,
    the most of them on a tie; else the first group with the digit groups
    after it, provided that the first group has a digit or is a short
    letter prefix.
    """
    first = _joined(text, groups[:1])
    if len(first) >= MIN_LENGTH and match_formats(first):
        return 1
    best, best_rank = 0, 0
    for count in range(2, len(groups) + 1):
        joined = _joined(text, groups[:count])
        if not MIN_LENGTH <= len(joined) <= MAX_LENGTH:
            continue
        rank = check_rank(match_formats(joined))
        if rank and rank >= best_rank:
            best, best_rank = count, rank
    grouped = (
        len(first) <= _MAX_PRINTED_GROUP
        and len(groups) > 2
        and any(char.isdigit() for char in first)
    )
    if grouped:
        # "6129 0912 3456 7891 2345": a number printed in groups is all of
        # its digit groups, unless a longer join passes a check digit. A
        # shorter join that fits a format, or passes one by chance, would
        # cut the number short.
        digit_groups = _printed_groups(text, groups)
        if best and best_rank == _PASSED_RANK and best >= digit_groups:
            return best
        return digit_groups
    if best:
        return best
    # A prefix of one or two capitals may stand apart from its digits
    # ("Z 607 9557 609"); a word such as "Call" or "Ref" may not.
    printed = text[groups[0][0] : groups[0][1]]
    prefix = (
        printed.isalpha()
        and printed.isupper()
        and len(printed) <= _MAX_SPACED_PREFIX
        and len(groups) > 1
    )
    if not prefix and not any(char.isdigit() for char in first):
        return 0
    count = 1
    for start, end in groups[1:]:
        group = text[start:end]
        if len(group) < _MIN_LOOSE_GROUP or not any(c.isdigit() for c in group):
            break
        count += 1
    return count


def _printed_groups(text: str, groups: list[tuple[int, int]]) -> int:
    """Return how many groups, from the first, are the digit groups of one number.

    A group of one character ("2 Pakete") or without a digit ends them, and
    so does the longest length of a number.
    """
    length = groups[0][1] - groups[0][0]
    count = 1
    for start, end in groups[1:]:
        group = text[start:end]
        length += end - start
        if len(group) < 2 or not any(c.isdigit() for c in group) or length > MAX_LENGTH:
            break
        count += 1
    return count


def read_number(text: str, position: int = 0) -> PrintedNumber | None:
    """Return the tracking number that starts at ``text[position:]``, if one does."""
    carrier = None
    slugs: tuple[str, ...] = ()
    named = carrier_name_at(text, position)
    if named is not None:
        slugs, name_end = named
        position = _AFTER_NAME.match(text, name_end).end()  # type: ignore[union-attr]
    groups = _groups(text, position)
    if not groups:
        return None
    first = text[groups[0][0] : groups[0][1]]
    if len(first) > _MAX_LETTER_PREFIX and first.isalpha():
        return None
    groups = groups[: _best_prefix(text, groups)]
    if not groups:
        return None
    number = _joined(text, groups)
    if not MIN_LENGTH <= len(number) <= MAX_LENGTH:
        return None
    if not any(char.isdigit() for char in number):
        return None
    if slugs:
        carrier = slugs[0] if len(slugs) == 1 else carrier_for_number(number, slugs)
    start, end = groups[0][0], groups[-1][1]
    return PrintedNumber(text[start:end], number, carrier, start, end)


def read_whole_number(text: str) -> PrintedNumber | None:
    """Return the tracking number that ``text`` consists of, or None.

    ``text`` may start with the carrier's name; anything after the number
    means that ``text`` is a sentence or a note, not a number.
    """
    stripped = text.strip()
    found = read_number(stripped)
    if found is None or stripped[found.end :].strip(" .;"):
        return None
    return found

"""Values that look like tracking numbers but are something else.

A phone number, a postcode, a date, a price, an IBAN or a number printed
next to a label such as "Invoice" or "Reference" (on its line, or alone in
the table cell before it) is never a tracking number.
"""

from __future__ import annotations

import re

from extractors import languages

_DATE = re.compile(
    r"^(?:\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|\d{4}-\d{2}-\d{2}T?[\d:]*|\d{1,2}:\d{2}(?::\d{2})?)$"
)
_PRICE_CONTEXT = re.compile(r"[$€£¥₹]|\b(?:EUR|USD|GBP|CHF|PLN|SEK|DKK|CZK)\b", re.I)
_DECIMALS = re.compile(r"[.,]\d{2}(?!\d)")
_IBAN = re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$")
_AMOUNT = re.compile(
    r"[$€£¥₹]\s?\d|\d(?:[\d.,]*\d)?\s?(?:[€£]|(?:EUR|USD|GBP|CHF|SEK|DKK|NOK|PLN|"
    r"CZK|zł|kr|Kč)(?!\w))"
)
_OTHER_LABEL_WINDOW = 28


def is_date_or_time(raw: str) -> bool:
    """Return whether ``raw`` is written as a date or a time of day."""
    return bool(_DATE.match(raw.strip()))


def is_iban(value: str) -> bool:
    """Return whether ``value`` is an IBAN with a valid ISO 13616 checksum."""
    if not _IBAN.match(value):
        return False
    moved = value[4:] + value[:4]
    digits = "".join(str(int(char, 36)) for char in moved)
    return int(digits) % 97 == 1


def is_price(line: str, start: int, end: int) -> bool:
    """Return whether the value at ``line[start:end]`` is written as an amount."""
    before = line[max(0, start - 4) : start]
    after = line[end : end + 8]
    return bool(
        _PRICE_CONTEXT.search(before)
        or _PRICE_CONTEXT.search(after)
        or _DECIMALS.match(after)
    )


def has_amount(line: str) -> bool:
    """Return whether ``line`` shows an amount of money ("$54.00", "19,99 €")."""
    return bool(_AMOUNT.search(line))


def is_phone(line: str, start: int) -> bool:
    """Return whether the value at ``line[start:]`` is written as a phone number."""
    return line[max(0, start - 2) : start].strip().startswith("+")


def other_label_before(line: str, start: int) -> str | None:
    """Return a non-tracking label ("Invoice", "Tel.") just before ``start``."""
    window = line[max(0, start - _OTHER_LABEL_WINDOW) : start]
    matches = list(languages.list_pattern("other_labels").finditer(window))
    if not matches:
        return None
    match = matches[-1]
    # Only separators may stand between that label and the value.
    between = window[match.end() :]
    if re.fullmatch(r"[\s:#.\-\u2013=nºr°o]*", between, re.I):
        return match.group("phrase")
    return None


def label_cell_before(line: str, start: int, previous: str) -> str | None:
    """Return the non-tracking label of the cell before a value that starts its line.

    Table cells are lines of the text view, so "Kundennummer | 0307380695"
    reaches here as two lines; only separators may follow the label.
    """
    if line[:start].strip(" :#*"):
        return None
    return other_label_before(previous, len(previous.rstrip()))

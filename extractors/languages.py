"""Language data: labels, kind phrases and forwarded-message markers.

The words live in the package's ``data/languages.toml``, one table per
ISO 639-1 code; this module compiles them into patterns once.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from extractors.model import Kind


class LanguageDataError(ValueError):
    """The language data file is invalid."""


@dataclass(frozen=True)
class Phrase:
    """One word or phrase of one language, with what it stands for."""

    language: str
    text: str
    # A kind for kind phrases, else the name of the list it came from.
    meaning: str


def _words(phrases: list[str]) -> str:
    # Longest first, so that "order number" wins over "order".
    escaped = sorted((re.escape(p) for p in phrases), key=len, reverse=True)
    return "|".join(escaped)


def first_characters(phrases: list[str]) -> str:
    """Return a lookahead for the first characters of ``phrases``.

    Put before an alternation, it rejects most positions of a line with one
    character test instead of one test per phrase.
    """
    first = sorted({phrase[0] for phrase in phrases if phrase})
    return "(?=[" + "".join(re.escape(char) for char in first) + "])"


def phrase_pattern(phrases: list[str]) -> re.Pattern[str]:
    """Compile whole-word, case-insensitive alternatives into one pattern."""
    return re.compile(
        rf"{first_characters(phrases)}(?<!\w)(?:{_words(phrases)})(?!\w)",
        re.IGNORECASE,
    )


@cache
def languages() -> dict[str, dict[str, Any]]:
    """Return the raw language tables by ISO 639-1 code."""
    text = resources.files("extractors").joinpath("data/languages.toml").read_text()
    data = tomllib.loads(text)
    for code, table in data.items():
        for kind in table.get("kinds", {}):
            if kind not in Kind.__members__.values():
                raise LanguageDataError(f"language {code!r}: unknown kind {kind!r}")
    return data


@cache
def phrases(list_name: str) -> dict[str, Phrase]:
    """Return every phrase of one list (e.g. "order_labels") by casefolded text.

    A phrase that several languages list is returned once, with the first
    language that lists it; ``languages_of`` returns all of them.
    """
    table: dict[str, Phrase] = {}
    for code, data in languages().items():
        for text in data.get(list_name, []):
            table.setdefault(text.casefold(), Phrase(code, text, list_name))
    return table


@cache
def _speakers(list_name: str) -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    for code, data in languages().items():
        for text in data.get(list_name, []):
            key = text.casefold()
            if code not in table.get(key, ()):
                table[key] = (*table.get(key, ()), code)
    return table


def languages_of(list_name: str, text: str) -> tuple[str, ...]:
    """Return the codes of every language whose ``list_name`` contains ``text``.

    "order" is an English and a Swedish label, so it is evidence for neither.
    """
    return _speakers(list_name).get(" ".join(text.split()).casefold(), ())


@cache
def list_pattern(list_name: str) -> re.Pattern[str]:
    """Return one pattern that matches any phrase of ``list_name``, named "phrase"."""
    words = [phrase.text for phrase in phrases(list_name).values()]
    return re.compile(
        rf"{first_characters(words)}(?<!\w)(?P<phrase>{_words(words)})(?!\w)",
        re.IGNORECASE,
    )


@cache
def kind_phrases(place: str) -> dict[str, list[Phrase]]:
    """Return the kind phrases of ``place`` ("subject" or "body") by casefolded text."""
    table: dict[str, list[Phrase]] = {}
    for code, data in languages().items():
        for kind, places in data.get("kinds", {}).items():
            for text in places.get(place, []):
                table.setdefault(text.casefold(), []).append(Phrase(code, text, kind))
    return table


@cache
def kind_words() -> frozenset[str]:
    """Return every word of every kind phrase, casefolded ("shipped", "versandt")."""
    words: set[str] = set()
    for place in ("subject", "body"):
        for text in kind_phrases(place):
            words.update(_TOKEN.findall(text))
    return frozenset(words)


@cache
def kind_pattern(place: str) -> re.Pattern[str]:
    """Return one pattern that matches any kind phrase of ``place``."""
    words = list(kind_phrases(place))
    return re.compile(
        rf"{first_characters(words)}(?<!\w)(?P<phrase>{_words(words)})(?!\w)",
        re.IGNORECASE,
    )


@cache
def header_names(header: str) -> dict[str, str]:
    """Return the names of a forwarded block's ``header`` in every language."""
    table: dict[str, str] = {}
    for code, data in languages().items():
        for name in data.get("headers", {}).get(header, []):
            table.setdefault(name.casefold(), code)
    return table


@cache
def condition_pattern(codes: tuple[str, ...]) -> re.Pattern[str] | None:
    """Return one pattern of the condition words of the languages ``codes``.

    Condition words open a clause about what may happen ("if", "once",
    "sobald"); None when those languages list none.
    """
    words = [
        word
        for code in codes
        for word in languages().get(code, {}).get("condition_words", [])
    ]
    return phrase_pattern(words) if words else None


def lookup(list_name: str, text: str) -> Phrase | None:
    """Return the phrase of ``list_name`` that ``text`` is, ignoring case."""
    return phrases(list_name).get(" ".join(text.split()).casefold())


@cache
def _function_words() -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    for code, data in languages().items():
        for word in data.get("function_words", []):
            key = word.casefold()
            table[key] = (*table.get(key, ()), code)
    return table


_TOKEN = re.compile(r"[^\W\d_]+")
# Words read for the count: enough for a verdict, bounded for long emails.
_MAX_COUNTED_WORDS = 3000


def function_word_counts(text: str) -> dict[str, int]:
    """Return, per language, how many of its function words ``text`` contains."""
    table = _function_words()
    counts: dict[str, int] = {}
    for index, match in enumerate(_TOKEN.finditer(text)):
        if index >= _MAX_COUNTED_WORDS:
            break
        for code in table.get(match.group().casefold(), ()):
            counts[code] = counts.get(code, 0) + 1
    return counts

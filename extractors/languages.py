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


def phrase_pattern(phrases: list[str]) -> re.Pattern[str]:
    """Compile whole-word, case-insensitive alternatives into one pattern."""
    return re.compile(rf"(?<!\w)(?:{_words(phrases)})(?!\w)", re.IGNORECASE)


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
    """Return every phrase of one list (e.g. "order_labels") by casefolded text."""
    table: dict[str, Phrase] = {}
    for code, data in languages().items():
        for text in data.get(list_name, []):
            table.setdefault(text.casefold(), Phrase(code, text, list_name))
    return table


@cache
def list_pattern(list_name: str) -> re.Pattern[str]:
    """Return one pattern that matches any phrase of ``list_name``, named "phrase"."""
    words = [phrase.text for phrase in phrases(list_name).values()]
    return re.compile(rf"(?<!\w)(?P<phrase>{_words(words)})(?!\w)", re.IGNORECASE)


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
def kind_pattern(place: str) -> re.Pattern[str]:
    """Return one pattern that matches any kind phrase of ``place``."""
    return re.compile(
        rf"(?<!\w)(?P<phrase>{_words(list(kind_phrases(place)))})(?!\w)", re.IGNORECASE
    )


@cache
def header_names(header: str) -> dict[str, str]:
    """Return the names of a forwarded block's ``header`` in every language."""
    table: dict[str, str] = {}
    for code, data in languages().items():
        for name in data.get("headers", {}).get(header, []):
            table.setdefault(name.casefold(), code)
    return table


def lookup(list_name: str, text: str) -> Phrase | None:
    """Return the phrase of ``list_name`` that ``text`` is, ignoring case."""
    return phrases(list_name).get(" ".join(text.split()).casefold())

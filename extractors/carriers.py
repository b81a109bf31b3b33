"""Carrier definitions, read from the package's ``data/carriers.toml``.

Each carrier has its display name, the names emails print, its sender
domains, its tracking-link patterns and template, and its tracking-number
formats with their check digits. The file's header documents its fields.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import quote

from extractors.checkdigits import ALGORITHMS, verify


class CarrierDataError(ValueError):
    """The carrier definitions file is invalid."""


class CheckResult(StrEnum):
    """The result of a format's check digit on a number."""

    PASSED = "passed"
    FAILED = "failed"
    # The format has no known check digit.
    NONE = "none"


@dataclass(frozen=True)
class CheckSpec:
    """A check-digit algorithm and where it reads the number."""

    algorithm: str
    params: dict[str, object]
    start: int = 0
    end: int = -1
    at: int = -1
    prepend: str = ""

    def verify(self, number: str) -> bool:
        """Return whether ``number``'s check character is right."""
        end = self.end if self.end != 0 else len(number)
        payload = self.prepend + number[self.start : end]
        return verify(self.algorithm, payload, number[self.at], self.params)


@dataclass(frozen=True)
class NumberFormat:
    """One tracking-number format of one carrier, with its examples."""

    carrier: str
    name: str
    pattern: re.Pattern[str]
    check: CheckSpec | None
    distinctive: bool
    valid: tuple[str, ...]
    invalid: tuple[str, ...]

    def check_number(self, number: str) -> CheckResult:
        """Return the check-digit result of ``number``, which fits the pattern."""
        if self.check is None:
            return CheckResult.NONE
        return CheckResult.PASSED if self.check.verify(number) else CheckResult.FAILED


@dataclass(frozen=True)
class FormatMatch:
    """A number that fits a carrier's format, with its check-digit result."""

    format: NumberFormat
    check: CheckResult

    @property
    def carrier(self) -> str:
        """The slug of the format's carrier."""
        return self.format.carrier


@dataclass(frozen=True)
class Carrier:
    """One carrier's definition."""

    slug: str
    name: str
    names: tuple[str, ...]
    sender_domains: tuple[str, ...]
    tracking_url: str
    links: tuple[re.Pattern[str], ...]
    formats: tuple[NumberFormat, ...] = field(default=())
    # Languages of the emails in which a name this carrier shares with
    # another one ("DHL") most likely means this carrier.
    languages: tuple[str, ...] = field(default=())


def _check_spec(raw: dict[str, Any], where: str) -> CheckSpec:
    algorithm = raw.get("algorithm")
    if algorithm not in ALGORITHMS:
        raise CarrierDataError(f"{where}: unknown check algorithm {algorithm!r}")
    start, end = raw.get("payload", [0, -1])
    params = {k: v for k, v in raw.items() if k in ("weights", "from_right")}
    return CheckSpec(
        algorithm=algorithm,
        params=params,
        start=start,
        end=end,
        at=raw.get("at", -1),
        prepend=raw.get("prepend", ""),
    )


def _number_format(slug: str, raw: dict[str, Any]) -> NumberFormat:
    where = f"carrier {slug!r} format {raw.get('name')!r}"
    try:
        return NumberFormat(
            carrier=slug,
            name=raw["name"],
            pattern=re.compile(raw["pattern"]),
            check=_check_spec(raw["check"], where) if "check" in raw else None,
            distinctive=bool(raw["distinctive"]),
            valid=tuple(raw["valid"]),
            invalid=tuple(raw["invalid"]),
        )
    except (KeyError, re.error) as error:
        raise CarrierDataError(f"{where}: missing or invalid {error}") from error


def _carrier(slug: str, raw: dict[str, Any]) -> Carrier:
    try:
        return Carrier(
            slug=slug,
            name=raw["name"],
            names=tuple(raw["names"]),
            sender_domains=tuple(raw["sender_domains"]),
            tracking_url=raw["tracking_url"],
            links=tuple(re.compile(link, re.IGNORECASE) for link in raw["links"]),
            formats=tuple(_number_format(slug, f) for f in raw.get("formats", [])),
            languages=tuple(raw.get("languages", [])),
        )
    except (KeyError, re.error) as error:
        raise CarrierDataError(
            f"carrier {slug!r}: missing or invalid {error}"
        ) from error


@cache
def carriers() -> dict[str, Carrier]:
    """Return every carrier definition by slug, in the file's order."""
    text = resources.files("extractors").joinpath("data/carriers.toml").read_text()
    return {slug: _carrier(slug, raw) for slug, raw in tomllib.loads(text).items()}


def carrier_name(slug: str | None) -> str | None:
    """Return the display name of carrier ``slug``, or None when unknown."""
    if not slug or slug == "other":
        return None
    known = carriers().get(slug)
    return known.name if known else slug


def tracking_url(slug: str | None, number: str) -> str | None:
    """Return the tracking link of ``number`` at carrier ``slug``, or None."""
    known = carriers().get(slug or "")
    if known is None or not known.tracking_url:
        return None
    return known.tracking_url.replace("{number}", quote(number, safe=""))


@cache
def _all_formats() -> tuple[NumberFormat, ...]:
    return tuple(f for carrier in carriers().values() for f in carrier.formats)


@cache
def _any_format() -> re.Pattern[str]:
    # One alternation of every pattern rejects most tokens in a single call.
    return re.compile("|".join(f"(?:{f.pattern.pattern})" for f in _all_formats()))


def match_formats(number: str) -> list[FormatMatch]:
    """Return every carrier format that ``number`` fits, with its check result."""
    if not _any_format().fullmatch(number):
        return []
    return [
        FormatMatch(f, f.check_number(number))
        for f in _all_formats()
        if f.pattern.fullmatch(number)
    ]


@cache
def _any_link() -> re.Pattern[str]:
    patterns = [
        link.pattern.replace("(?P<number>", "(?:")
        for carrier in carriers().values()
        for link in carrier.links
    ]
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


def match_link(url: str) -> list[tuple[str, str]]:
    """Return (carrier slug, raw number text) for each carrier link ``url`` is.

    ``url`` is decoded already and has no scheme. Most URLs are no carrier's,
    and one combined pattern finds that out first.
    """
    if not _any_link().search(url):
        return []
    found = []
    for carrier in carriers().values():
        for link in carrier.links:
            match = link.search(url)
            if match:
                found.append((carrier.slug, match.group("number")))
                break
    return found


def carrier_for_domain(domain: str) -> str | None:
    """Return the carrier whose sender domain ``domain`` is (or is under)."""
    domain = domain.lower().rstrip(".")
    for carrier in carriers().values():
        for sender in carrier.sender_domains:
            if domain == sender or domain.endswith("." + sender):
                return carrier.slug
    return None


@dataclass(frozen=True)
class _Name:
    printed: str
    slugs: tuple[str, ...]


@cache
def _slugs_by_name() -> dict[str, _Name]:
    """Return each carrier name by its casefolded text, with every carrier it names.

    A name may belong to several carriers: "DHL" names DHL Express and DHL
    Paket alike, and the number's format or the email's language decides.
    """
    table: dict[str, _Name] = {}
    for carrier in carriers().values():
        for name in carrier.names:
            key = name.casefold()
            known = table.get(key)
            if known is None:
                table[key] = _Name(name, (carrier.slug,))
            elif carrier.slug not in known.slugs:
                table[key] = _Name(known.printed, (*known.slugs, carrier.slug))
    return table


@cache
def _names_pattern() -> re.Pattern[str]:
    # All-capital names (UPS, DPD, GLS) match only in capitals, so that
    # the words "ups" or "gls" inside prose do not name a carrier.
    parts = []
    first = set()
    for name in _slugs_by_name().values():
        escaped = re.escape(name.printed)
        parts.append(f"(?-i:{escaped})" if name.printed.isupper() else escaped)
        first.add(re.escape(name.printed[0]))
    parts.sort(key=len, reverse=True)
    # The lookahead rejects most positions with one character test.
    ahead = "(?=[" + "".join(sorted(first)) + "])"
    return re.compile(
        ahead + r"(?<![\w@./])(?:" + "|".join(parts) + r")(?![\w@])", re.I
    )


def find_carrier_names(text: str) -> list[tuple[str, int, str]]:
    """Return (slug, offset, name as printed) for each carrier name in ``text``.

    A name shared by several carriers yields one tuple per carrier, at the
    same offset, in the order of the carrier definitions.
    """
    table = _slugs_by_name()
    return [
        (slug, match.start(), match.group())
        for match in _names_pattern().finditer(text)
        for slug in table[match.group().casefold()].slugs
    ]


def carrier_name_at(text: str, position: int) -> tuple[tuple[str, ...], int] | None:
    """Return the carriers a name at ``text[position:]`` names, and its end."""
    match = _names_pattern().match(text, position)
    if match is None:
        return None
    return _slugs_by_name()[match.group().casefold()].slugs, match.end()


_CHECK_RANK = {CheckResult.PASSED: 3, CheckResult.NONE: 2, CheckResult.FAILED: 1}


def check_rank(matches: list[FormatMatch]) -> int:
    """Rank the best check result among ``matches``: passed 3, none 2, failed 1.

    A number that fits no format ranks 0.
    """
    return max((_CHECK_RANK[m.check] for m in matches), default=0)


def carrier_for_number(number: str, slugs: tuple[str, ...]) -> str | None:
    """Return the one carrier of ``slugs`` whose formats ``number`` fits best.

    None when the number fits none of their formats, or fits two of them
    equally well.
    """
    best: dict[str, int] = {}
    for found in match_formats(number):
        if found.carrier in slugs:
            rank = _CHECK_RANK[found.check]
            best[found.carrier] = max(rank, best.get(found.carrier, 0))
    if not best:
        return None
    top = max(best.values())
    winners = [slug for slug, rank in best.items() if rank == top]
    return winners[0] if len(winners) == 1 else None


def carrier_for_language(slugs: list[str], language: str | None) -> str | None:
    """Return the carrier among ``slugs`` whose emails are in ``language``.

    This decides a name that several carriers share when nothing else does;
    without a carrier for that language, the first of ``slugs`` is returned.
    """
    if not slugs:
        return None
    for slug in slugs:
        known = carriers().get(slug)
        if known is not None and language in known.languages:
            return slug
    return slugs[0]


def shared_name(slugs: list[str]) -> bool:
    """Return whether one carrier name printed in an email names all of ``slugs``."""
    named = set(slugs)
    return len(named) > 1 and any(
        named <= set(name.slugs) for name in _slugs_by_name().values()
    )

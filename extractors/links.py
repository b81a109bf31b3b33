"""Tracking links: undoing email encodings and click-tracking redirects.

A link in an email is rarely the carrier's URL as such. HTML escapes its
ampersands (``&amp;``), a broken quoted-printable encoding leaves ``=3D`` and
soft line breaks in it, and newsletter tools wrap it in a redirect whose
target sits percent-encoded in a query parameter or in the path. ``unwrap``
returns the link and every URL nested in it, decoded.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from extractors.carriers import CheckResult, match_formats, match_link
from extractors.document import Document
from extractors.model import Candidate, Evidence, FieldName

EXTRACTOR = "links"

log = logging.getLogger("bcctrack.extract")

_QP_SOFT_BREAK = re.compile(r"=\r?\n")
_QP_EQUALS = re.compile(r"=3D", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:(?://)?", re.IGNORECASE)
# A URL nested in another: its scheme, plain or percent-encoded once or twice.
_NESTED = re.compile(r"https?(?::|%3A|%253A)(?://|%2F%2F|%252F%252F)", re.IGNORECASE)
_NUMBER_SPLIT = re.compile(r"[,;+\s|]+")
_TRACKING_VALUE = re.compile(r"[A-Z0-9]{5,40}")
_MAX_NESTING = 4
# Query parameters that name a tracking number on any site: shops' own
# tracking pages and tracking services ("order-status?tracking-number=...").
# Bare "tracking" or "trk" and "tracking_id" also name click-tracking
# campaign ids, so the name must say "number" or "code".
_TRACKING_PARAMETER = re.compile(
    r"(?:tracking|track)[-_]?(?:numbers?|num|nbr|no|code)|trknbr",
    re.IGNORECASE,
)
# A value in no carrier's format still counts when it looks like a parcel
# number: capitals and digits only, mostly digits, with a long run of them.
_PARCEL_SHAPE = re.compile(r"(?=[A-Z0-9]{10,30}$)(?=.*[0-9]{8})[A-Z0-9]+")
_MIN_DIGIT_SHARE = 0.6
# Click-tracking links of shop emails are under 2,000 characters. Longer
# ones are not read: the carriers' link patterns scan a link once for each
# carrier domain in it, so a link that repeats a domain costs time that
# grows with the square of its length.
MAX_LINK_LENGTH = 4096
# Link targets read per message, in characters: shop emails carry well under
# 200 KB of them, and the bound keeps a message of long crafted links from
# costing more than a few seconds.
MAX_LINK_TEXT = 512 * 1024


@dataclass(frozen=True)
class LinkNumber:
    """A tracking number read from a carrier's link."""

    carrier: str
    number: str
    url: str


def clean_href(href: str) -> str:
    """Undo HTML entities and stray quoted-printable in a link target."""
    text = html.unescape(href)
    if "=\n" in text or "=\r\n" in text or _QP_EQUALS.search(text):
        text = _QP_EQUALS.sub("=", _QP_SOFT_BREAK.sub("", text))
    return _WHITESPACE.sub("", text)


def unwrap(href: str) -> list[str]:
    """Return the decoded link and every URL nested in it, outermost first."""
    url = clean_href(href)
    found = [unquote(url)]
    for _ in range(_MAX_NESTING):
        match = _NESTED.search(url, 1)
        if match is None:
            break
        url = unquote(url[match.start() :])
        found.append(unquote(url))
    return found


def numbers_in_link(href: str) -> list[LinkNumber]:
    """Return the tracking numbers of every carrier link in ``href``.

    A link longer than ``MAX_LINK_LENGTH`` characters yields none.
    """
    found: list[LinkNumber] = []
    if len(href) > MAX_LINK_LENGTH:
        return found
    for url in unwrap(href):
        bare = _SCHEME.sub("", url)
        for carrier, raw in match_link(bare):
            for piece in _NUMBER_SPLIT.split(unquote(raw)):
                number = piece.replace("-", "").upper()
                if _TRACKING_VALUE.fullmatch(number) and any(
                    c.isdigit() for c in number
                ):
                    found.append(LinkNumber(carrier, number, url))
    return found


def parameter_numbers(href: str) -> list[tuple[str, str]]:
    """Return (number, URL) for tracking-number parameters of links to any site.

    A value counts when it fits a carrier's format without failing its check
    digit, or, in no format at all, when it has the shape of a parcel
    number: such parameters also carry order ids and session keys.
    """
    found: list[tuple[str, str]] = []
    if len(href) > MAX_LINK_LENGTH:
        return found
    for url in unwrap(href):
        for name, value in parse_qsl(urlsplit(url).query):
            if not _TRACKING_PARAMETER.fullmatch(name):
                continue
            number = value.replace("-", "").replace(" ", "")
            if not _TRACKING_VALUE.fullmatch(number.upper()):
                continue
            checks = {m.check for m in match_formats(number.upper())}
            if checks - {CheckResult.FAILED} or (not checks and _parcel_shaped(number)):
                found.append((number.upper(), url))
    return found


def _parcel_shaped(value: str) -> bool:
    """Return whether a value in no carrier's format looks like a parcel number."""
    if not _PARCEL_SHAPE.fullmatch(value):
        return False
    return sum(char.isdigit() for char in value) >= _MIN_DIGIT_SHARE * len(value)


def candidates(document: Document) -> list[Candidate]:
    """Return a tracking-number candidate for each carrier link in the message.

    Links after the first ``MAX_LINK_TEXT`` characters of link targets are
    not read.
    """
    found = []
    budget = MAX_LINK_TEXT
    for position, link in enumerate(document.links):
        budget -= len(link.href)
        if budget < 0:
            log.debug("links after the first %d not read", position)
            break
        carrier_numbers = numbers_in_link(link.href)
        if not carrier_numbers:
            found.extend(_parameter_candidates(link.href, link.location))
        for item in carrier_numbers:
            found.append(
                Candidate(
                    field=FieldName.TRACKING_NUMBER,
                    value=item.number,
                    confidence=0.9,
                    evidence=Evidence(
                        EXTRACTOR,
                        link.location,
                        item.url[:200],
                        f"a {item.carrier} tracking link",
                    ),
                    carrier=item.carrier,
                    tracking_url=item.url,
                )
            )
    return found


def _parameter_candidates(href: str, location: str) -> list[Candidate]:
    return [
        Candidate(
            field=FieldName.TRACKING_NUMBER,
            value=number,
            confidence=0.75,
            evidence=Evidence(
                # The parameter's name labels the value, as a label would.
                "labels",
                location,
                url[:200],
                "in a tracking-number parameter of a link",
            ),
        )
        for number, url in parameter_numbers(href)
    ]

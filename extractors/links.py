"""Tracking links: undoing email encodings and click-tracking redirects.

A link in an email is rarely the carrier's URL as such. HTML escapes its
ampersands (``&amp;``), a broken quoted-printable encoding leaves ``=3D`` and
soft line breaks in it, and newsletter tools wrap it in a redirect whose
target sits percent-encoded in a query parameter or in the path. ``unwrap``
returns the link and every URL nested in it, decoded.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from urllib.parse import unquote

from extractors.carriers import match_link
from extractors.document import Document
from extractors.model import Candidate, Evidence, FieldName

EXTRACTOR = "links"

_QP_SOFT_BREAK = re.compile(r"=\r?\n")
_QP_EQUALS = re.compile(r"=3D", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:(?://)?", re.IGNORECASE)
# A URL nested in another: its scheme, plain or percent-encoded once or twice.
_NESTED = re.compile(r"https?(?::|%3A|%253A)(?://|%2F%2F|%252F%252F)", re.IGNORECASE)
_NUMBER_SPLIT = re.compile(r"[,;+\s|]+")
_TRACKING_VALUE = re.compile(r"[A-Z0-9]{5,40}")
_MAX_NESTING = 4


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
    """Return the tracking numbers of every carrier link in ``href``."""
    found: list[LinkNumber] = []
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


def candidates(document: Document) -> list[Candidate]:
    """Return a tracking-number candidate for each carrier link in the message."""
    found = []
    for link in document.links:
        for item in numbers_in_link(link.href):
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

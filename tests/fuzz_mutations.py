"""Hypothesis strategies that damage real emails, for fuzzing parse and extraction.

Shared by tests/test_fuzz.py (a bounded run) and bench/fuzz.py (a long run).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from extractors import MessageParseError, extract
from extractors.carriers import carrier_name
from extractors.model import Kind

_BOUNDARY = re.compile(rb'boundary="?([^";\r\n]+)"?', re.IGNORECASE)
_CHARSET = re.compile(rb"charset=\"?([A-Za-z0-9_.:-]+)\"?", re.IGNORECASE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")

Mutation = Callable[[bytes, Any], bytes]


def load_corpus(corpus: Path) -> list[bytes]:
    """Return the raw bytes of every .eml file under ``corpus``."""
    return [path.read_bytes() for path in sorted(corpus.rglob("*.eml"))]


def _split(raw: bytes) -> tuple[bytes, bytes]:
    match = _HEADER_END.search(raw)
    if match is None:
        return raw, b""
    return raw[: match.start()], raw[match.end() :]


def truncate(raw: bytes, data: Any) -> bytes:
    """Cut the message at a random byte."""
    return raw[: data.draw(st.integers(0, len(raw)), label="cut at")]


def damage_boundaries(raw: bytes, data: Any) -> bytes:
    """Replace, drop or duplicate MIME boundaries."""
    boundaries = set(_BOUNDARY.findall(raw))
    for boundary in boundaries:
        choice = data.draw(st.sampled_from(["other", "empty", "drop", "dup"]))
        if choice == "other":
            raw = raw.replace(b"--" + boundary, b"--" + boundary[::-1], 1)
        elif choice == "empty":
            raw = raw.replace(boundary, b"", 1)
        elif choice == "drop":
            raw = raw.replace(b"--" + boundary + b"--", b"")
        else:
            raw = raw.replace(b"--" + boundary, b"--" + boundary + b"\r\n--" + boundary)
    return raw


def damage_headers(raw: bytes, data: Any) -> bytes:
    """Delete, duplicate or garble header lines and break folding."""
    head, body = _split(raw)
    lines = head.split(b"\n")
    edits = data.draw(st.integers(1, 6), label="header edits")
    for _ in range(edits):
        if not lines:
            break
        index = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(
            st.sampled_from(["delete", "dup", "garble", "unfold", "nul"])
        )
        if action == "delete":
            del lines[index]
        elif action == "dup":
            lines.insert(index, lines[index])
        elif action == "garble":
            lines[index] = data.draw(st.binary(max_size=200))
        elif action == "unfold":
            lines.insert(index, b" continuation without a header")
        else:
            lines[index] = lines[index] + b"\x00\xff\xfe"
    return b"\n".join(lines) + b"\n\n" + body


def damage_charsets(raw: bytes, data: Any) -> bytes:
    """Name unknown, wrong or empty charsets, and switch encodings."""
    bogus = data.draw(
        st.sampled_from(
            [b"x-unknown", b"", b"utf-7", b"utf-16", b"iso-2022-jp", b"cp1252", b"\xff"]
        )
    )
    raw = _CHARSET.sub(b"charset=" + bogus, raw)
    if data.draw(st.booleans(), label="switch transfer encoding"):
        raw = raw.replace(b"quoted-printable", b"base64").replace(b"7bit", b"base64")
    return raw


def huge_headers(raw: bytes, data: Any) -> bytes:
    """Add one enormous header or very many small ones."""
    head, body = _split(raw)
    if data.draw(st.booleans(), label="one huge header"):
        size = data.draw(st.integers(10_000, 2_000_000))
        extra = b"X-Huge: " + b"a" * size
    else:
        count = data.draw(st.integers(1_000, 20_000))
        extra = b"\n".join(b"X-Many-%d: value" % i for i in range(count))
    return head + b"\n" + extra + b"\n\n" + body


def deep_nesting(raw: bytes, data: Any) -> bytes:
    """Wrap the message in many levels of multipart/mixed."""
    depth = data.draw(st.integers(10, 400), label="depth")
    head, body = _split(raw)
    content = b"Content-Type: text/plain\n\n" + body
    for level in range(depth):
        boundary = b"nest%d" % level
        content = (
            b'Content-Type: multipart/mixed; boundary="'
            + boundary
            + b'"\n\n--'
            + boundary
            + b"\n"
            + content
            + b"\n--"
            + boundary
            + b"--\n"
        )
    kept = [
        line for line in head.split(b"\n") if not line.lower().startswith(b"content-")
    ]
    return b"\n".join(kept) + b"\nMIME-Version: 1.0\n" + content


def binary_body(raw: bytes, data: Any) -> bytes:
    """Replace the body with random bytes."""
    head, _ = _split(raw)
    return head + b"\n\n" + data.draw(st.binary(min_size=1, max_size=100_000))


MUTATIONS: dict[str, Mutation] = {
    "truncate": truncate,
    "boundaries": damage_boundaries,
    "headers": damage_headers,
    "charsets": damage_charsets,
    "huge headers": huge_headers,
    "deep nesting": deep_nesting,
    "binary body": binary_body,
}


def mutated_email(corpus: list[bytes]) -> st.SearchStrategy[tuple[str, bytes]]:
    """Draw a corpus email damaged by one to three mutations."""

    @st.composite
    def build(draw: Any) -> tuple[str, bytes]:
        raw = draw(st.sampled_from(corpus), label="email")
        names = draw(
            st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=3)
        )
        data = _Drawer(draw)
        for name in names:
            raw = MUTATIONS[name](raw, data)
        return "+".join(names), raw

    return build()


class _Drawer:
    """Lets the mutations call ``data.draw`` inside a composite strategy."""

    def __init__(self, draw: Any) -> None:
        self._draw = draw

    def draw(self, strategy: st.SearchStrategy[Any], label: str | None = None) -> Any:
        return self._draw(strategy, label=label)


def check_extraction(raw: bytes) -> None:
    """Extract ``raw``; raise AssertionError if the result is malformed.

    A MessageParseError is a well-formed outcome: it is the reason the
    pipeline records. Any other exception propagates and fails the case.
    """
    try:
        extraction = extract(raw)
    except MessageParseError as error:
        assert str(error), "a parse error must carry a reason"
        return
    result = extraction.to_json()
    assert set(result) == {"kind", "order_number", "shipments", "customer", "language"}
    assert result["kind"] in {kind.value for kind in Kind}
    assert result["order_number"] is None or (
        isinstance(result["order_number"], str) and result["order_number"].strip()
    )
    for shipment in result["shipments"]:
        number = shipment["tracking_number"]
        assert isinstance(number, str)
        assert number
        assert number == number.upper()
        assert " " not in number
        carrier = shipment["carrier"]
        assert carrier is None or carrier == "other" or carrier_name(carrier)
        url = shipment["tracking_url"]
        assert url is None or url.startswith(("https://", "http://"))
    customer = result["customer"]
    assert set(customer) == {"email", "name"}
    assert customer["email"] is None or "@" in customer["email"]
    language = result["language"]
    assert language is None or re.fullmatch(r"[a-z]{2}", language)

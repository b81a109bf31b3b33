"""Extraction cost grows linearly with hostile input, never with its square.

Each case is timed at two sizes, the larger four times the smaller: linear
cost takes about four times as long, quadratic cost sixteen times. The bound
of eight leaves room for timer noise; the best of three runs is compared.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from extractors import extract

_SIZE = 1000
_RUNS = 3
_MAX_GROWTH = 8.0


def message(body: str, content_type: str = "text/html") -> bytes:
    """Return a raw message with ``body`` as its only part."""
    return (
        "From: Shop <orders@shop.example>\nTo: anna@customer.example\n"
        "Subject: Your order has shipped\nDate: Mon, 02 Dec 2024 10:00:00 +0000\n"
        f"Content-Type: {content_type}; charset=utf-8\n\n{body}\n"
    ).encode()


def _links(count: int) -> bytes:
    return message(
        "".join(
            f'<a href="https://www.ups.com/track?tracknum=1Z999AA1{i:010d}">x</a>'
            for i in range(count)
        )
    )


def _forward_markers(count: int) -> bytes:
    block = "-----Original Message-----\nFrom: a@b.example\nTo: c@d.example\nhi\n"
    return message(block * count, "text/plain")


def _stage_lines(count: int) -> bytes:
    return message("Shipped\nDelivered\n" * count, "text/plain")


def _kind_phrases(count: int) -> bytes:
    return message("Your order has shipped. It was delivered.\n" * count, "text/plain")


def _kind_phrases_on_one_line(count: int) -> bytes:
    return message("your order has shipped and " * count * 5, "text/plain")


def _numbers_on_one_line(count: int) -> bytes:
    # Ten-digit numbers beside a carrier's name, as a DHL Express number is.
    return message("DHL " + "3318810025 " * count, "text/plain")


def _label_cells(count: int) -> bytes:
    rows = "".join(
        f"<tr><td>Kundennummer</td><td>{i:010d}</td></tr>" for i in range(count)
    )
    return message(f"<p>Versand mit DHL</p><table>{rows}</table>")


def _digit_groups(count: int) -> bytes:
    return message("1 " * (count * 100), "text/plain")


def _tracking_labels(count: int) -> bytes:
    return message(
        "\n".join(f"Tracking number: 1Z999AA1{i:010d}" for i in range(count)),
        "text/plain",
    )


def _long_link(count: int) -> bytes:
    # One link that names a carrier's domain over and over.
    href = "https://" + "ups.com/" * count
    return message(f'<a href="{href}">x</a>')


CASES: dict[str, Callable[[int], bytes]] = {
    "carrier links": _links,
    "forward markers": _forward_markers,
    "progress bar lines": _stage_lines,
    "kind phrases": _kind_phrases,
    "kind phrases on one line": _kind_phrases_on_one_line,
    "numbers on one line": _numbers_on_one_line,
    "label cells": _label_cells,
    "digit groups": _digit_groups,
    "tracking labels": _tracking_labels,
    "long link": _long_link,
}


def _seconds(raw: bytes) -> float:
    best = float("inf")
    for _ in range(_RUNS):
        started = time.perf_counter()
        extract(raw)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("case", sorted(CASES))
def test_cost_grows_linearly(case: str) -> None:
    make = CASES[case]
    small = _seconds(make(_SIZE))
    large = _seconds(make(4 * _SIZE))
    # The constant term keeps very fast cases from failing on timer noise.
    assert large <= _MAX_GROWTH * small + 0.05, (case, small, large)

"""Generated hostile messages that once made extraction slow with their square.

Used by tests/extractors/test_linear_time.py and bench/extract.py --hostile.
"""

from __future__ import annotations

from collections.abc import Callable


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


def _tracking_columns(count: int) -> bytes:
    # A tracking header cell in every row of one long table.
    rows = "".join(
        f"<tr><td>Tracking number</td><td>{i:010d}</td></tr>" for i in range(count)
    )
    return message(f"<table>{rows}</table>")


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
    "tracking columns": _tracking_columns,
    "digit groups": _digit_groups,
    "tracking labels": _tracking_labels,
    "long link": _long_link,
}

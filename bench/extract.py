"""Extraction throughput on one core, beside a mail-parser + BeautifulSoup baseline.

Usage: python bench/extract.py [CORPUS_DIR] [--rounds N] [--hostile]

The baseline parses each email with mail-parser and turns its HTML parts into
text with BeautifulSoup's lxml parser: the least any extractor must do. Both
run in this process, one after the other, over the same bytes, so that the
ratio does not depend on the machine.

``--hostile`` instead times generated hostile messages at two sizes, the
second four times the first: linear cost grows about four times, quadratic
cost sixteen times.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mailparser
from bs4 import BeautifulSoup

from extractors import extract

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hostile_inputs import CASES

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def baseline(raw: bytes) -> None:
    """Parse the email and get the text of its HTML parts."""
    parsed = mailparser.parse_from_bytes(raw)
    for html in parsed.text_html:
        BeautifulSoup(html, "lxml").get_text()


def measure(
    function: Callable[[bytes], object], emails: list[bytes], rounds: int
) -> float:
    """Return emails per second of ``function`` over ``rounds`` passes."""
    started = time.perf_counter()
    for _ in range(rounds):
        for raw in emails:
            function(raw)
    return len(emails) * rounds / (time.perf_counter() - started)


def _seconds(raw: bytes) -> float:
    started = time.perf_counter()
    extract(raw)
    return time.perf_counter() - started


def hostile(size: int) -> None:
    """Print the extraction time of each hostile message at two sizes."""
    print(f"{'input':<26} {'n':>7} {'seconds':>8} {'4n':>7} {'seconds':>8} growth")
    for name, make in CASES.items():
        first = _seconds(make(size))
        second = _seconds(make(4 * size))
        print(
            f"{name:<26} {size:>7} {first:>8.2f} {4 * size:>7} {second:>8.2f} "
            f"{second / first:>6.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--rounds", type=int, default=5, help="passes over the corpus")
    parser.add_argument(
        "--hostile",
        type=int,
        nargs="?",
        const=5000,
        default=None,
        metavar="N",
        help="time generated hostile messages of N and 4N items (default N: 5000)",
    )
    options = parser.parse_args()
    # mail-parser warns about every part that is neither text nor HTML.
    logging.getLogger("mailparser").setLevel(logging.ERROR)
    if options.hostile is not None:
        hostile(options.hostile)
        return
    emails = [path.read_bytes() for path in sorted(options.corpus.rglob("*.eml"))]
    if not emails:
        parser.error(f"no .eml files under {options.corpus}")

    # One warm-up pass each loads data files and compiles patterns.
    measure(baseline, emails, 1)
    measure(extract, emails, 1)
    base = measure(baseline, emails, options.rounds)
    ours = measure(extract, emails, options.rounds)
    print(f"emails: {len(emails)} x {options.rounds} rounds")
    print(f"baseline (mail-parser + BeautifulSoup lxml): {base:8.1f} emails/s")
    print(f"bcctrack extract:                            {ours:8.1f} emails/s")
    print(f"ratio: {ours / base:.2f}")


if __name__ == "__main__":
    main()

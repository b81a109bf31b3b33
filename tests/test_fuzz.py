"""Property-based fuzzing of parse and extraction with damaged corpus emails."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz_mutations import check_extraction, load_corpus, mutated_email

CASES = 150


@pytest.fixture(scope="module")
def corpus_emails(corpus_dir: Path) -> list[bytes]:
    return load_corpus(corpus_dir)


def test_damaged_emails_extract_cleanly(corpus_emails: list[bytes]) -> None:
    @settings(
        max_examples=CASES,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(mutated_email(corpus_emails))
    def run(case: tuple[str, bytes]) -> None:
        check_extraction(case[1])

    run()


@pytest.mark.parametrize("depth", [50, 500, 5000])
def test_deep_nesting_has_reason_or_result(depth: int) -> None:
    content = b"Content-Type: text/plain\n\nTracking number: 1Z999AA10123456784\n"
    for level in range(depth):
        boundary = b"b%d" % level
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
    check_extraction(b"From: a@shop.example\nMIME-Version: 1.0\n" + content)


# Inputs that bench/fuzz.py found to crash extraction before they were fixed.
FOUND_BY_FUZZING = [
    pytest.param(
        b"Subject: one\nSubject: two\nFrom: a@shop.example\n\nTracking number: x\n",
        id="repeated-subject",
    ),
]


@pytest.mark.parametrize("raw", FOUND_BY_FUZZING)
def test_fuzzing_regressions(raw: bytes) -> None:
    check_extraction(raw)

"""Long fuzzing run of parse and extraction on damaged corpus emails.

Prints the cases tried, the failures found (with the mutation and the error)
and the time per case. A failure here is a bug to fix, then a case for the
bounded test in tests/test_fuzz.py.

    python bench/fuzz.py --cases 5000 [--corpus ../shared/corpus] [--seed 7]
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Found

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fuzz_mutations import check_extraction, load_corpus, mutated_email  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--corpus", type=Path, default=REPO.parent / "shared" / "corpus"
    )
    arguments = parser.parse_args()

    corpus = load_corpus(arguments.corpus)
    if not corpus:
        print(f"no .eml files under {arguments.corpus}", file=sys.stderr)
        return 2
    tried: Counter[str] = Counter()
    failures: list[str] = []
    slowest = (0.0, "")

    @settings(
        max_examples=arguments.cases,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(mutated_email(corpus))
    def run(case: tuple[str, bytes]) -> None:
        nonlocal slowest
        names, raw = case
        tried[names] += 1
        started = time.perf_counter()
        try:
            check_extraction(raw)
        except Exception:
            failures.append(f"{names} ({len(raw)} bytes):\n{traceback.format_exc()}")
        elapsed = time.perf_counter() - started
        if elapsed > slowest[0]:
            slowest = (elapsed, f"{names} ({len(raw)} bytes)")

    started = time.perf_counter()
    try:
        run._hypothesis_internal_use_seed = arguments.seed  # type: ignore[attr-defined]
        run()
    except Found:
        pass
    seconds = time.perf_counter() - started
    total = sum(tried.values())
    print(f"cases tried:   {total}")
    print(f"failures:      {len(failures)}")
    print(
        f"seconds:       {seconds:.1f} ({1000 * seconds / max(total, 1):.1f} ms a case)"
    )
    print(f"slowest case:  {slowest[0]:.2f} s, {slowest[1]}")
    print("cases per mutation:")
    for names, count in sorted(tried.items(), key=lambda item: -item[1])[:20]:
        print(f"  {count:6d}  {names}")
    for failure in failures[:10]:
        print("\nFAILURE", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Hostile inputs that once made extraction slow with the square of their size.

``python bench/extract.py --hostile N`` times them at two sizes; the test
runs each once and checks the result is well-formed.
"""

from __future__ import annotations

import pytest

from fuzz_mutations import check_extraction
from hostile_inputs import CASES

_SIZE = 1000


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_input_extracts_cleanly(case: str) -> None:
    # How the time grows with the size is measured by bench/extract.py
    # --hostile; here each input must give a well-formed result.
    check_extraction(CASES[case](4 * _SIZE))

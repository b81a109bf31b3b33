"""The slot for shop rules: an admin's extraction rules for one shop.

Rules are the strongest layer: a candidate from a rule wins over every
generic extractor for its field, and rules can switch generic layers off.
bcctrack passes the shop's rules to ``extract_message``; anything with this
protocol fits (``extractors.shoprules.RuleSet`` is the one bcctrack builds
from rule files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from extractors.document import Document
from extractors.model import Candidate, FieldName

EXTRACTOR = "rules"


@dataclass
class RuleResult:
    """The candidates rules found, and the rules that could not run."""

    candidates: list[Candidate] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class ShopRules(Protocol):
    """An admin's extraction rules for one shop."""

    @property
    def name(self) -> str:
        """The rule set's name, shown in evidence."""
        ...

    def apply(self, document: Document) -> RuleResult:
        """Return the candidates the rules find in ``document``.

        Candidates carry ``Evidence(extractor="rules", ...)``.
        """
        ...

    def disabled(self, field_name: FieldName) -> frozenset[str]:
        """Return the generic layers whose candidates for ``field_name`` are dropped."""
        ...

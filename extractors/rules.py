"""The slot for shop rules: an admin's extraction rules for one shop.

Rules are the strongest layer: a candidate from a rule wins over every
generic extractor for its field. bcctrack passes the shop's rules to
``extract_message``; anything with a name and a ``candidates`` method fits.
"""

from __future__ import annotations

from typing import Protocol

from extractors.document import Document
from extractors.model import Candidate

EXTRACTOR = "rules"


class ShopRules(Protocol):
    """An admin's extraction rules for one shop."""

    @property
    def name(self) -> str:
        """The rule set's name, shown in evidence."""
        ...

    def candidates(self, document: Document) -> list[Candidate]:
        """Return a candidate per field the rules find in ``document``.

        Candidates carry ``Evidence(extractor="rules", ...)``.
        """
        ...

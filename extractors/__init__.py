"""Pure extraction of orders, shipments and customers from shop emails.

No I/O and no database: everything here takes bytes or parsed messages and
returns values, so it can be used and tested on its own.
"""

from __future__ import annotations

from extractors.extraction import extract_message
from extractors.message import MessageParseError, ParsedMessage, parse_message
from extractors.model import (
    Candidate,
    Customer,
    Evidence,
    Extraction,
    FieldName,
    Kind,
    ShipmentResult,
)
from extractors.rules import ShopRules


def extract(raw: bytes, rules: ShopRules | None = None) -> Extraction:
    """Parse ``raw`` and extract from it."""
    return extract_message(parse_message(raw), rules)


__all__ = [
    "Candidate",
    "Customer",
    "Evidence",
    "Extraction",
    "FieldName",
    "Kind",
    "MessageParseError",
    "ParsedMessage",
    "ShipmentResult",
    "ShopRules",
    "extract",
    "extract_message",
    "parse_message",
]

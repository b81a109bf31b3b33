"""Pure extraction of orders, shipments and customers from shop emails.

No I/O and no database: everything here takes bytes or parsed messages and
returns values, so it can be used and tested on its own.
"""

from __future__ import annotations

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


def extract_message(message: ParsedMessage) -> Extraction:
    """Extract kind, order number, shipments, customer and language."""
    # TODO(layered extractors land): only the customer and language so far.
    customer = Customer()
    if message.to:
        customer = Customer(email=message.to[0].email, name=message.to[0].name)
    language = (message.content_language or "").split(",")[0].strip()[:2].lower()
    return Extraction(
        customer=customer, language=language or None, defects=list(message.defects)
    )


def extract(raw: bytes) -> Extraction:
    """Parse ``raw`` and extract from it."""
    return extract_message(parse_message(raw))


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
    "extract",
    "extract_message",
    "parse_message",
]

"""Cleaning values from emails before they are stored or written into headers."""

from __future__ import annotations

import re
from dataclasses import replace
from email.errors import HeaderParseError
from email.header import decode_header, make_header

from extractors.model import Customer, Extraction, ShipmentResult

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def display_name(value: str | None) -> str | None:
    """Return a display name as readable text without line breaks, or None.

    Encoded words (``=?utf-8?q?...?=``) are decoded first, because a CR or LF
    hidden in one would otherwise come back when a mail library decodes it
    while writing a header.
    """
    if not value:
        return None
    text = value
    if "=?" in text:
        try:
            text = str(make_header(decode_header(text)))
        except (HeaderParseError, LookupError, UnicodeDecodeError, ValueError):
            text = value
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text or None


def db_text(value: str | None) -> str | None:
    """Return ``value`` without NUL characters, which PostgreSQL text rejects."""
    if value is None:
        return None
    return value.replace("\x00", "")


def clean_extraction(extraction: Extraction) -> Extraction:
    """Return ``extraction`` with its values safe to store.

    NUL characters go from every value (a hostile email can carry them and
    PostgreSQL refuses them in text), and the customer's display name is
    decoded and kept on one line.
    """
    shipments = [
        ShipmentResult(
            tracking_number=db_text(s.tracking_number) or "",
            carrier=db_text(s.carrier),
            tracking_url=db_text(s.tracking_url),
            carrier_name=display_name(db_text(s.carrier_name)),
        )
        for s in extraction.shipments
    ]
    return replace(
        extraction,
        order_number=db_text(extraction.order_number),
        shipments=[s for s in shipments if s.tracking_number],
        customer=Customer(
            email=db_text(extraction.customer.email),
            name=display_name(extraction.customer.name),
        ),
        language=db_text(extraction.language),
        defects=[db_text(defect) or "" for defect in extraction.defects],
    )

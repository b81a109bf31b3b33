"""Extraction results: candidates with evidence, and the resolved values."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """The kind of an email: the event it reports."""

    ORDER_CONFIRMATION = "order_confirmation"
    SHIPPING_CONFIRMATION = "shipping_confirmation"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    DELIVERY_PROBLEM = "delivery_problem"
    AVAILABLE_FOR_PICKUP = "available_for_pickup"
    CANCELLATION = "cancellation"
    RETURN = "return"
    OTHER = "other"


class FieldName(StrEnum):
    """The fields extractors find candidates for."""

    KIND = "kind"
    ORDER_NUMBER = "order_number"
    TRACKING_NUMBER = "tracking_number"
    CARRIER = "carrier"
    CUSTOMER_EMAIL = "customer_email"
    CUSTOMER_NAME = "customer_name"
    LANGUAGE = "language"


@dataclass(frozen=True)
class Evidence:
    """The place a candidate was found, and the reason it was taken."""

    extractor: str
    location: str
    matched: str
    reason: str = ""


@dataclass
class Candidate:
    """A value one extractor found, with its evidence and confidence.

    ``carrier`` and ``tracking_url`` are set on tracking-number candidates
    when the extractor found them.
    """

    field: FieldName
    value: str
    confidence: float
    evidence: Evidence
    carrier: str | None = None
    tracking_url: str | None = None
    # The language of the label or phrase that matched, for language votes,
    # and the number of the line it was on (the subject is line 0).
    language: str | None = None
    line_number: int = 0
    # Weak evidence (a phrase that names the parcel) counts only when no
    # link, label or markup gives the email's tracking numbers.
    weak: bool = False
    # Filled in by the resolver: whether the candidate won, and why.
    accepted: bool | None = None
    verdict: str = ""


@dataclass(frozen=True)
class ShipmentResult:
    """One resolved shipment: a tracking number, its carrier and a link."""

    tracking_number: str
    carrier: str | None
    tracking_url: str | None
    # For carrier "other": the carrier's name as the email printed it.
    carrier_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON object of ``bcctrack extract --json``."""
        return {
            "tracking_number": self.tracking_number,
            "carrier": self.carrier,
            "tracking_url": self.tracking_url,
        }


@dataclass(frozen=True)
class Customer:
    """The customer an email was sent to."""

    email: str | None = None
    name: str | None = None


@dataclass
class Extraction:
    """The resolved result of extracting one email."""

    kind: Kind = Kind.OTHER
    order_number: str | None = None
    shipments: list[ShipmentResult] = field(default_factory=list)
    customer: Customer = field(default_factory=Customer)
    language: str | None = None
    # Every candidate with the resolver's verdict, for --explain.
    candidates: list[Candidate] = field(default_factory=list)
    # Parser defects of the message, as "<part>: <defect>" strings.
    defects: list[str] = field(default_factory=list)
    # A carrier the email names without any tracking number.
    named_carrier: str | None = None
    # How the email was forwarded, when it was; the customer is then the
    # original message's recipient.
    forwarded: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the result keys of ``bcctrack extract --json``."""
        return {
            "kind": str(self.kind),
            "order_number": self.order_number,
            "shipments": [shipment.to_json() for shipment in self.shipments],
            "customer": {"email": self.customer.email, "name": self.customer.name},
            "language": self.language,
        }

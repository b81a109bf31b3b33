"""The markup layer: schema.org Order and ParcelDelivery in JSON-LD or microdata.

Shop systems embed these for Gmail. Both syntaxes are read into the same
shape (a dict per item with "@type" and property lists), then walked for
order numbers, tracking numbers and links, carriers and order status.
Templates fill ``trackingNumber`` before the number exists ("N/A", "0",
"{{ tracking_number }}"), so its value must read as one tracking number.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

from extractors.carriers import carrier_for_number, find_carrier_names
from extractors.document import Document
from extractors.links import numbers_in_link
from extractors.model import Candidate, Evidence, FieldName, Kind
from extractors.numbers import read_whole_number

EXTRACTOR = "markup"
_TAG = re.compile(r"<[^>]*>")

# schema.org OrderStatus values and the kind of email that reports them.
_STATUS_KINDS = {
    "orderprocessing": Kind.ORDER_CONFIRMATION,
    "orderpaymentdue": Kind.ORDER_CONFIRMATION,
    "orderintransit": Kind.SHIPPING_CONFIRMATION,
    "orderdelivered": Kind.DELIVERED,
    "orderpickupavailable": Kind.AVAILABLE_FOR_PICKUP,
    "orderproblem": Kind.DELIVERY_PROBLEM,
    "ordercancelled": Kind.CANCELLATION,
    "orderreturned": Kind.RETURN,
}


def _type_name(item: dict[str, Any]) -> str:
    raw = item.get("@type", "")
    if isinstance(raw, list):
        raw = raw[0] if raw else ""
    return str(raw).rstrip("/").rsplit("/", 1)[-1]


def _values(item: dict[str, Any], name: str) -> list[Any]:
    value = item.get(name)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _walk(node: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    """Yield every item dict in ``node``, nested ones too."""
    if depth > 10:
        return
    if isinstance(node, list):
        for element in node:
            yield from _walk(element, depth + 1)
    elif isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key != "@context":
                yield from _walk(value, depth + 1)


def _text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("name") or value.get("@id")
    if isinstance(value, str | int) and str(value).strip():
        return str(value).strip()
    return None


def _carriers_of(item: dict[str, Any]) -> tuple[str, ...]:
    """Return the carriers the item's carrier or provider name names."""
    for value in _values(item, "carrier") + _values(item, "provider"):
        name = _text(value)
        if name:
            found = find_carrier_names(name)
            if found:
                first = found[0][1]
                return tuple(slug for slug, offset, _ in found if offset == first)
    return ()


def _one_carrier(slugs: tuple[str, ...], number: str | None) -> str | None:
    if len(slugs) == 1:
        return slugs[0]
    return carrier_for_number(number, slugs) if number and slugs else None


def _candidate(
    field: FieldName, value: str, matched: str, reason: str, **extra: Any
) -> Candidate:
    return Candidate(
        field=field,
        value=value,
        confidence=0.95,
        evidence=Evidence(EXTRACTOR, "schema.org markup", matched, reason),
        **extra,
    )


def _delivery_candidates(item: dict[str, Any]) -> list[Candidate]:
    found = []
    slugs = _carriers_of(item)
    for value in _values(item, "trackingNumber"):
        text = _text(value)
        printed = (
            read_whole_number(_TAG.sub(" ", html.unescape(text))) if text else None
        )
        if printed is None:
            continue
        found.append(
            _candidate(
                FieldName.TRACKING_NUMBER,
                printed.number,
                f"trackingNumber {text!r}",
                "ParcelDelivery.trackingNumber",
                carrier=_one_carrier(slugs, printed.number) or printed.carrier,
            )
        )
    for value in _values(item, "trackingUrl"):
        url = _text(value)
        for link in numbers_in_link(url or ""):
            found.append(
                _candidate(
                    FieldName.TRACKING_NUMBER,
                    link.number,
                    f"trackingUrl {url!r}",
                    f"ParcelDelivery.trackingUrl of {link.carrier}",
                    carrier=link.carrier,
                    tracking_url=url,
                )
            )
    carrier = _one_carrier(slugs, found[0].value if found else None)
    if carrier:
        found.append(
            _candidate(FieldName.CARRIER, carrier, "carrier", "ParcelDelivery.carrier")
        )
    return found


def _order_candidates(item: dict[str, Any]) -> list[Candidate]:
    found = []
    for value in _values(item, "orderNumber"):
        number = _text(value)
        if number:
            found.append(
                _candidate(
                    FieldName.ORDER_NUMBER,
                    number.lstrip("#"),
                    f"orderNumber {number!r}",
                    "Order.orderNumber",
                )
            )
    for value in _values(item, "orderStatus"):
        status = (_text(value) or "").rstrip("/").rsplit("/", 1)[-1].lower()
        kind = _STATUS_KINDS.get(status)
        if kind is not None:
            found.append(
                _candidate(
                    FieldName.KIND, kind, f"orderStatus {status}", "Order.orderStatus"
                )
            )
    return found


def candidates(document: Document) -> list[Candidate]:
    """Return the candidates of every schema.org item in the message."""
    found: list[Candidate] = []
    for item in _walk([*document.microdata, *document.jsonld]):
        type_name = _type_name(item)
        if type_name == "ParcelDelivery":
            found.extend(_delivery_candidates(item))
        elif type_name == "Order":
            found.extend(_order_candidates(item))
    return found

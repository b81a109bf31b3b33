"""The resolver's trust rules for tracking numbers and their carriers."""

from __future__ import annotations

import pytest

from extractors import extract
from extractors.carriers import CheckResult, match_formats
from extractors.resolver import MAX_TRACKING_NUMBERS

UPS = "1Z999AA10123456784"
UPS_OTHER = "1Z12345E6678912343"
DHL_PAKET = "00340434554012921360"
DHL_PAKET_FAILING = "00340434554012921361"
DHL_PIECE = "JJD0099999999"
# Ten digits that pass DHL Express's check digit (mod 7).
DHL_EXPRESS = "3318810025"
DHL_EXPRESS_ACCOUNT = "7529170342"


def message(
    body: str,
    subject: str = "Your order",
    content_type: str = "text/plain; charset=utf-8",
) -> bytes:
    """Return a raw single-part message from a shop."""
    return (
        f"From: Shop <orders@shop.example>\nTo: Anna <anna@customer.example>\n"
        f"Subject: {subject}\nMIME-Version: 1.0\nContent-Type: {content_type}\n\n"
        f"{body}\n"
    ).encode()


def numbers(raw: bytes) -> list[str]:
    return sorted(shipment.tracking_number for shipment in extract(raw).shipments)


def carriers(raw: bytes) -> list[str | None]:
    return [shipment.carrier for shipment in extract(raw).shipments]


def test_trap_numbers_pass_the_check_digit() -> None:
    for number in (DHL_EXPRESS, DHL_EXPRESS_ACCOUNT):
        checks = {m.check for m in match_formats(number) if m.carrier == "dhl_express"}
        assert checks == {CheckResult.PASSED}, number


def test_weak_pattern_beside_its_carrier_name() -> None:
    raw = message(f"Your order is on its way.\nYour DHL shipment {DHL_EXPRESS}\n")
    assert numbers(raw) == [DHL_EXPRESS]


def test_weak_pattern_far_from_carrier_name() -> None:
    raw = message(
        "Your order has shipped with DHL.\nThank you for shopping with us.\n"
        f"Reference for your records {DHL_EXPRESS}\n"
    )
    assert numbers(raw) == []


@pytest.mark.parametrize(
    "printed",
    [f"DE-{DHL_EXPRESS}", f"{DHL_EXPRESS}-2", "0800 974650", "556659-7971"],
)
def test_weak_pattern_not_its_own_token(printed: str) -> None:
    raw = message(f"Shipped with DHL: {printed}\n")
    assert numbers(raw) == []


def test_weak_pattern_yields_to_labelled_number() -> None:
    raw = message(
        f"Shipped with DHL.\nTracking number: {DHL_PIECE}\n"
        f"DHL customer {DHL_EXPRESS_ACCOUNT}\n"
    )
    assert numbers(raw) == [DHL_PIECE]


def test_distinctive_pattern_beside_labelled_number() -> None:
    raw = message(f"Tracking number: {UPS}\nYour second parcel: {UPS_OTHER}\n")
    assert numbers(raw) == sorted([UPS, UPS_OTHER])


@pytest.mark.parametrize(
    "label", ["Klantnummer", "Customer number", "Numéro client", "Kundnummer"]
)
def test_label_in_cell_before(label: str) -> None:
    raw = message(
        "<p>Shipped with DHL Express.</p><table>"
        f"<tr><td>{label}</td><td>{DHL_EXPRESS_ACCOUNT}</td></tr></table>",
        content_type="text/html; charset=utf-8",
    )
    assert numbers(raw) == []


def test_pattern_inside_order_number() -> None:
    raw = message(
        f"Order number: A-{DHL_EXPRESS}\nShipped with DHL, parcel {DHL_EXPRESS}\n"
    )
    result = extract(raw)
    assert result.order_number == f"A-{DHL_EXPRESS}"
    assert result.shipments == []


def test_text_part_number_kept_without_html_number() -> None:
    raw = (
        b"From: Shop <orders@shop.example>\nTo: anna@customer.example\n"
        b"Subject: Your order has shipped\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/alternative; boundary="b"\n\n--b\n'
        b"Content-Type: text/plain\n\nTracking number: " + UPS.encode() + b"\n"
        b"--b\nContent-Type: text/html\n\n<p>Your order has shipped.</p>"
        b"\n--b--\n"
    )
    assert numbers(raw) == [UPS]


def _ups_links(count: int) -> str:
    return "".join(
        f'<a href="https://www.ups.com/track?tracknum=1Z999AA1{i:010d}">x</a>'
        for i in range(count)
    )


def test_many_tracking_numbers_take_none() -> None:
    raw = message(
        _ups_links(MAX_TRACKING_NUMBERS + 1), content_type="text/html; charset=utf-8"
    )
    result = extract(raw)
    assert result.shipments == []
    assert all(c.accepted is False for c in result.candidates if c.value[:2] == "1Z")


def test_several_tracking_numbers_taken() -> None:
    raw = message(_ups_links(3), content_type="text/html; charset=utf-8")
    assert len(numbers(raw)) == 3


GERMAN_SHOP = "Ihre Bestellung wurde mit DHL versendet.\nSendungsnummer: "
DHL_NUMBERS = {
    DHL_EXPRESS: "dhl_express",
    "123456789012": "dhl_paket",
    DHL_PAKET_FAILING: "dhl_paket",
    # A number of no known format takes the carrier the language means.
    "AB12CD34EF": "dhl_paket",
}


@pytest.mark.parametrize("number", sorted(DHL_NUMBERS))
def test_dhl_name_decided_by_number(number: str) -> None:
    raw = message(GERMAN_SHOP + number, subject="Ihre Bestellung wurde versendet")
    assert carriers(raw) == [DHL_NUMBERS[number]]


def test_carrier_name_before_labelled_number() -> None:
    raw = message(f"Ihre Sendungsnummer: DHL {DHL_PAKET}")
    assert carriers(raw) == ["dhl_paket"]


@pytest.mark.parametrize(
    ("subject", "body", "carrier"),
    [
        ("Ihre Bestellung wurde versendet", "Sie reist mit DHL.", "dhl_paket"),
        ("Your order has shipped", "It travels with DHL.", "dhl_express"),
    ],
)
def test_dhl_named_without_number(subject: str, body: str, carrier: str) -> None:
    assert extract(message(body, subject=subject)).named_carrier == carrier


def test_json_ld_dhl_carrier_by_number() -> None:
    markup = (
        '{"@context": "https://schema.org", "@type": "ParcelDelivery", '
        f'"carrier": {{"name": "DHL"}}, "trackingNumber": "<b>{DHL_PAKET}</b>"}}'
    )
    raw = message(
        f'<script type="application/ld+json">{markup}</script><p>Versendet</p>',
        content_type="text/html; charset=utf-8",
    )
    result = extract(raw)
    assert numbers(raw) == [DHL_PAKET]
    assert result.shipments[0].carrier == "dhl_paket"

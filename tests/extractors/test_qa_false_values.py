"""Defects found in QA: wrong values that extraction returns on emails written here.

Each test fails until its defect is fixed. The numbers that must not become
tracking numbers were chosen to pass the check digit of a carrier the email
names, as about one in seven 10-digit numbers passes DHL Express's mod 7.
"""

from __future__ import annotations

import pytest

from extractors import Kind, extract

UPS = "1Z999AA10123456784"
UPS_OTHER = "1Z12345E6678912343"
DHL_PAKET = "00340434554012921360"
DHL_PIECE = "JJD0099999999"


def message(
    body: str,
    subject: str = "Your order #10045 has shipped",
    content_type: str = "text/plain; charset=utf-8",
    to: str = "Anna Berg <anna@customer.example>",
) -> bytes:
    """Return a raw single-part message from a shop."""
    return (
        f"From: Shop <orders@shop.example>\nTo: {to}\nSubject: {subject}\n"
        f"MIME-Version: 1.0\nContent-Type: {content_type}\n\n{body}\n"
    ).encode()


def numbers(raw: bytes) -> list[str]:
    return sorted(shipment.tracking_number for shipment in extract(raw).shipments)


@pytest.mark.parametrize(
    "footer",
    [
        "Fragen? Unsere Hotline: 0301500080 (Mo-Fr 9-18 Uhr)",
        "Customer service: 0800 974650 (free)",
        "NIP 525-260-18-15",
        "Exempel AB, Org.nr 556659-7971",
        "Your account: 7529170342",
    ],
)
def test_footer_number_not_tracking(footer: str) -> None:
    raw = message(
        f"Your order #10045 has shipped with DHL.\nTracking number: {DHL_PIECE}\n\n"
        f"{footer}\n"
    )
    assert numbers(raw) == [DHL_PIECE]


def test_carrier_named_hotline_not_tracking() -> None:
    raw = message(
        "Your order has shipped with DHL. DHL will send you the tracking number.\n"
        "Customer service: 0800 235925\n"
    )
    assert numbers(raw) == []


def test_label_in_previous_cell_guards() -> None:
    raw = message(
        "<html><body><p>Ihre Bestellung wurde mit DHL versendet.</p><table>"
        "<tr><td>Bestellnummer</td><td>30011</td></tr>"
        "<tr><td>Rechnungsnummer</td><td>0306030620</td></tr>"
        "<tr><td>Kundennummer</td><td>0307380695</td></tr>"
        f"<tr><td>Sendungsnummer</td><td>{DHL_PAKET}</td></tr>"
        "</table></body></html>",
        subject="Versandbestätigung zu Bestellung 30011",
        content_type="text/html; charset=utf-8",
    )
    assert numbers(raw) == [DHL_PAKET]


def test_empty_tracking_cell_takes_no_later_row() -> None:
    raw = message(
        "<html><body><p>Your order has shipped with DHL.</p><table>"
        "<tr><td>Tracking number</td><td>will follow</td></tr>"
        "<tr><td>Customer number</td><td>0306030620</td></tr>"
        "</table></body></html>",
        content_type="text/html; charset=utf-8",
    )
    assert numbers(raw) == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"Tracking number: UPS {UPS}", UPS),
        (f"Sendungsnummer: DHL {DHL_PAKET}", DHL_PAKET),
        (f"Tracking number: {UPS} 12.03.2024", UPS),
        (f"Sendungsnummer: {DHL_PAKET} 2 Pakete", DHL_PAKET),
    ],
)
def test_label_value_is_one_number(line: str, expected: str) -> None:
    assert numbers(message(f"Your order has shipped.\n{line}\n")) == [expected]


def test_class_named_element_needs_number() -> None:
    raw = message(
        "<html><body><p>Your order has shipped with UPS.</p>"
        f"<p>Tracking number: {UPS}</p>"
        '<div class="tracking-help">Call 0800 555 2368</div></body></html>',
        content_type="text/html; charset=utf-8",
    )
    assert numbers(raw) == [UPS]


def test_order_number_fragment_not_tracking() -> None:
    raw = message(
        "We shipped 722-6717341-4901912 via DHL. Tracking will follow.\n",
        subject="Shipped: 722-6717341-4901912",
    )
    assert numbers(raw) == []


def test_prefixed_order_number_fragment_not_tracking() -> None:
    raw = message(
        "Ihre Bestellung wurde mit DHL versendet.\nBestellnummer: DE-1234567891\n"
        f"Sendungsnummer: {DHL_PAKET}\n",
        subject="Ihre Bestellung DE-1234567891 wurde versendet",
    )
    assert numbers(raw) == [DHL_PAKET]


def test_html_tracking_number_wins_over_text() -> None:
    raw = (
        b"From: Shop <orders@shop.example>\nTo: anna@customer.example\n"
        b"Subject: Your order #10066 has shipped\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/alternative; boundary="b"\n\n--b\n'
        b"Content-Type: text/plain\n\nTracking number: " + UPS_OTHER.encode() + b"\n"
        b"--b\nContent-Type: text/html\n\n<p>Tracking number: " + UPS.encode() + b"</p>"
        b"\n--b--\n"
    )
    assert numbers(raw) == [UPS]


@pytest.mark.parametrize(
    "hint",
    [
        "If your package was delivered but you can't find it, contact us.",
        "If you're not home, it will be ready for pickup at a UPS Access Point.",
        "Orders placed before 2pm are delivering today in selected cities.",
    ],
)
def test_shipped_subject_wins_over_body_hint(hint: str) -> None:
    raw = message(
        f"Your order #1006 is on its way with UPS.\nTracking number: {UPS}\n{hint}\n",
        subject="Your order #1006 is on its way",
    )
    assert extract(raw).kind == Kind.SHIPPING_CONFIRMATION


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        (
            "Order #1001 confirmed",
            "Thank you for your purchase! We will notify you when it has been shipped.",
        ),
        (
            "Your Acme order has been received!",
            "We've received your order #1002. You'll get another email as soon as "
            "your order is on its way.",
        ),
        (
            "Bestellbestätigung Nr. 1003",
            "Vielen Dank für Ihre Bestellung. Sobald Ihr Paket an den "
            "Versanddienstleister übergeben wurde, erhalten Sie eine E-Mail.",
        ),
        (
            "Thanks for your order #1005",
            "Thank you for your order! Once your item was delivered, you can "
            "leave a review.",
        ),
    ],
)
def test_order_confirmation_promising_shipping(subject: str, body: str) -> None:
    assert extract(message(body, subject=subject)).kind == Kind.ORDER_CONFIRMATION


def test_dhl_paket_number_keeps_carrier() -> None:
    raw = message(
        "Ihre Bestellung 10050 wurde mit DHL versendet.\n"
        "Sendungsnummer: 123456789012\n",
        subject="Ihre Bestellung 10050 wurde versendet",
    )
    assert [s.carrier for s in extract(raw).shipments] == ["dhl_paket"]


def test_swedish_email_language() -> None:
    raw = message(
        "Hej Anna,\nDin order 5566 har skickats med PostNord.\n"
        "Spårningsnummer: RR123456785SE\n",
        subject="Din order 5566 har skickats",
    )
    assert extract(raw).language == "sv"


def test_encoded_display_name_keeps_address() -> None:
    raw = message(
        f"Tracking number: {UPS}",
        to="=?utf-8?q?J=C3=BCrgen_<Einkauf>?= <j@customer.example>",
    )
    assert extract(raw).customer.email == "j@customer.example"


def test_order_number_after_confirmation_hash() -> None:
    raw = message("Thank you for your order!", subject="Order confirmation #12345")
    assert extract(raw).order_number == "12345"


def test_quoted_original_message_is_no_forward() -> None:
    raw = (
        "From: Acme Support <support@acme.example>\nTo: Bob Buyer <bob@example.org>\n"
        "Subject: RE: Where is my order #8801?\nMIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n\n"
        "Hi Bob,\nyour order #8801 has shipped with UPS today.\n"
        f"Tracking number: {UPS}\n\n-----Original Message-----\n"
        "From: Bob Buyer <bob@example.org>\nSent: Monday, December 2, 2024 9:00\n"
        "To: support@acme.example\nSubject: Where is my order #8801?\n\n"
        "Hi, when will my order ship?\n"
    ).encode()
    result = extract(raw)
    assert result.customer.email == "bob@example.org"
    assert numbers(raw) == [UPS]


@pytest.mark.parametrize(
    "placeholder", ["N/A", "To be confirmed", "0", "{{ tracking_number }}"]
)
def test_json_ld_placeholder_not_tracking(placeholder: str) -> None:
    markup = (
        '{"@context": "http://schema.org", "@type": "ParcelDelivery", '
        '"carrier": {"@type": "Organization", "name": "UPS"}, '
        f'"trackingNumber": "{placeholder}", '
        '"partOfOrder": {"@type": "Order", "orderNumber": "9901"}}'
    )
    raw = message(
        f'<html><head><script type="application/ld+json">{markup}</script></head>'
        "<body><p>Your order #9901 has shipped.</p></body></html>",
        content_type="text/html; charset=utf-8",
    )
    assert numbers(raw) == []

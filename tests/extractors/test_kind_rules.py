"""Kind rules: conditions, the lead of the email, and the subject's stage."""

from __future__ import annotations

import pytest

from extractors import Kind, extract

UPS = "1Z999AA10123456784"


def message(body: str, subject: str) -> bytes:
    """Return a raw plain-text message from a shop."""
    return (
        f"From: Shop <orders@shop.example>\nTo: Anna <anna@customer.example>\n"
        f"Subject: {subject}\nMIME-Version: 1.0\n"
        f"Content-Type: text/plain; charset=utf-8\n\n{body}\n"
    ).encode()


CONDITIONS = {
    "Order 501": "Thanks for your order. If it has been shipped, we will say so.",
    "Bestellung 502": (
        "Vielen Dank für Ihre Bestellung. Sobald wir sie an den "
        "Versanddienstleister übergeben haben, senden wir die Sendungsnummer."
    ),
    "Commande 503": (
        "Merci pour votre commande. Lorsque votre commande a été expédiée, "
        "vous recevrez un e-mail."
    ),
    "Bestelling 504": (
        "Bedankt voor je bestelling. Zodra je pakket is verzonden, sturen we "
        "een e-mail."
    ),
    "Pedido 505": (
        "Gracias por tu pedido. Cuando tu pedido ha sido enviado, te avisaremos."
    ),
    "Ordine 506": (
        "Grazie per il tuo ordine. Non appena il tuo ordine è stato spedito, "
        "riceverai una e-mail."
    ),
    "Zamówienie 507": (
        "Dziękujemy za zamówienie. Gdy paczka została nadana, otrzymasz e-mail."
    ),
    "Order 508": "Tack för din beställning. När paketet har skickats får du ett mejl.",
}


@pytest.mark.parametrize("subject", sorted(CONDITIONS))
def test_condition_keeps_order_confirmation(subject: str) -> None:
    result = extract(message(CONDITIONS[subject], subject))
    conditional = [
        c for c in result.candidates if c.field == "kind" and c.accepted is False
    ]
    assert result.kind == Kind.ORDER_CONFIRMATION
    assert conditional, "no phrase was rejected for its condition"
    assert all("may happen" in c.verdict for c in conditional)


def test_condition_across_wrapped_lines() -> None:
    body = (
        "Thank you for your order! We will send you an email as soon as your\n"
        "order has been shipped.\n"
    )
    assert extract(message(body, "Order 509")).kind == Kind.ORDER_CONFIRMATION


def test_phrase_after_condition_sentence_counts() -> None:
    body = "If you have questions, write to us. Your order has been shipped."
    assert extract(message(body, "Order 510")).kind == Kind.SHIPPING_CONFIRMATION


def test_hint_below_tracking_number() -> None:
    body = (
        f"Your order has shipped.\nTracking number: {UPS}\n"
        "Parcels are usually delivered within 3 days. Your package will be "
        "delivered today in most cities.\n"
    )
    result = extract(message(body, "Order 511 update"))
    assert result.kind == Kind.SHIPPING_CONFIRMATION


def test_status_above_tracking_number_advances_subject() -> None:
    body = f"Your package is out for delivery.\nTracking number: {UPS}\n"
    result = extract(message(body, "Your order has shipped"))
    assert result.kind == Kind.OUT_FOR_DELIVERY


def test_status_below_tracking_number_without_status_above() -> None:
    body = f"Tracking number: {UPS}\nYour package was delivered at 10:42.\n"
    assert extract(message(body, "UPS Update")).kind == Kind.DELIVERED


def test_rejected_phrase_explains_condition() -> None:
    body = "Thank you for your order. Once your item was delivered, leave a review."
    result = extract(message(body, "Order 512"))
    conditional = [c for c in result.candidates if c.value == Kind.DELIVERED]
    assert conditional
    assert conditional[0].accepted is False
    assert "'Once'" in conditional[0].verdict

"""Whole shop emails in the shape of common shop systems, in several languages.

Each footer is full of numbers that are not tracking numbers: phone numbers,
VAT and company ids, IBANs, customer and article numbers, dates and prices.
A test that asserts ``passes_check`` first uses such a trap: a number that
passes the check digit of a carrier the email names, so that only the trust
rules keep it out.
"""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from extractors import Extraction, Kind, extract
from extractors.carriers import CheckResult, match_formats


def passes_check(number: str, carrier: str) -> bool:
    """Return whether ``number`` passes a check digit of ``carrier``."""
    return any(
        m.carrier == carrier and m.check == CheckResult.PASSED
        for m in match_formats(number)
    )


def shop_email(
    subject: str,
    html: str,
    text: str | None = None,
    sender: str = "Shop <orders@shop.example>",
    to: str = "Anna Berg <anna@customer.example>",
    language: str | None = None,
) -> bytes:
    """Return a raw shop email with a text part (when given) and an HTML part."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Tue, 03 Dec 2024 09:12:00 +0100"
    message["Message-ID"] = "<template@shop.example>"
    if language:
        message["Content-Language"] = language
    if text is not None:
        message.set_content(text)
        message.add_alternative(html, subtype="html")
    else:
        message.set_content(html, subtype="html")
    return bytes(message)


def tracking(result: Extraction) -> list[tuple[str, str | None]]:
    return sorted((s.tracking_number, s.carrier) for s in result.shipments)


SHOPIFY_SHIPPED = """<!DOCTYPE html><html lang="en"><body>
<table class="header"><tr><td><h1>Pine &amp; Peak Outfitters</h1></td>
<td class="order-number"><span>Order #1042</span></td></tr></table>
<h2>Your order is on the way</h2>
<p>Your order is on the way. Track your shipment to see the delivery status.</p>
<p>UPS tracking number: <a href="https://click.pinepeak.example/ls/click?upn=\
https%3A%2F%2Fwww.ups.com%2Ftrack%3Floc%3Den_US%26tracknum%3D1Z5R89390357567127">\
1Z5R89390357567127</a></p>
<h3>Items in this shipment</h3>
<table><tr><td>Trail Tent 2P &times; 1<br><span>SKU 400690161033</span></td>
<td>$249.00</td></tr>
<tr><td>Sleeping Pad &times; 2<br><span>SKU 080000000019</span></td>
<td>$89.98</td></tr></table>
<h3>Shipping address</h3>
<p>Anna Berg<br>1200 Market St Apt 4<br>San Francisco CA 94105-1234</p>
<p>If your package was delivered but you can't find it, reply to this email.</p>
<p>Questions? Call us at (415) 555-0198 or 1-800-555-0199.</p>
</body></html>"""


def test_shopify_shipping_confirmation_en() -> None:
    raw = shop_email(
        "A shipment from order #1042 is on the way",
        SHOPIFY_SHIPPED,
        sender="Pine & Peak <store+4711@t.shopifyemail.com>",
    )
    result = extract(raw)
    assert tracking(result) == [("1Z5R89390357567127", "ups")]
    assert result.order_number == "1042"
    assert result.kind == Kind.SHIPPING_CONFIRMATION
    assert result.customer.email == "anna@customer.example"
    assert result.language == "en"


WOO_RECEIVED_TEXT = """Hi Anna,

Just to let you know - we've received your order #2231, and it is now being
processed. We'll send you another email as soon as your order is on its way.

[Order #2231] (3 December 2024)
Merino Socks x 2   £24.00
Subtotal: £24.00
Shipping: £4.95 via Royal Mail Tracked 48
Total: £28.95

Pay by bank transfer to:
Account number: 31926819  Sort code: 60-16-13
IBAN: GB29 NWBK 6016 1331 9268 19  BIC: NWBKGB2L

Wool & Co Ltd, Company no. 08123456, VAT GB 123 4567 89
"""


def test_woocommerce_order_received_en() -> None:
    html = "<html><body><pre>" + WOO_RECEIVED_TEXT + "</pre></body></html>"
    raw = shop_email(
        "Your Wool & Co order has been received!", html, text=WOO_RECEIVED_TEXT
    )
    result = extract(raw)
    assert result.kind == Kind.ORDER_CONFIRMATION
    assert result.order_number == "2231"
    assert tracking(result) == []


GERMANIZED_SHIPPED = """<html lang="de"><body>
<p>Hallo Anna Berg,</p>
<p>Ihre Bestellung 10233 vom 02.12.2024 wurde an DHL übergeben und ist unterwegs.</p>
<table>
<tr><td>Bestellnummer</td><td>10233</td></tr>
<tr><td>Kundennummer</td><td>0307380695</td></tr>
<tr><td>Rechnungsnummer</td><td>0306030620</td></tr>
<tr><td>Sendungsnummer</td><td>00340434784586062057</td></tr>
<tr><td>Gesamtsumme</td><td>149,90 €</td></tr>
</table>
<p>Falls Ihr Paket nicht zugestellt werden kann, liegt es in Ihrer Filiale
zur Abholung bereit.</p>
<p>Bergsport Schmidt GmbH · Hauptstr. 5 · 80331 München<br>
Unsere Hotline: 0301500080 (Mo-Fr 9-18 Uhr) · Fax 089 1234567-99<br>
USt-IdNr.: DE123456789 · HRB 123456 · IBAN DE89 3704 0044 0532 0130 00</p>
</body></html>"""


def test_woocommerce_germanized_shipped_de() -> None:
    for trap in ("0307380695", "0306030620", "0301500080"):
        assert passes_check(trap, "dhl_express"), trap
    raw = shop_email("Ihre Bestellung 10233 wurde versendet", GERMANIZED_SHIPPED)
    result = extract(raw)
    assert tracking(result) == [("00340434784586062057", "dhl_paket")]
    assert result.order_number == "10233"
    assert result.kind == Kind.SHIPPING_CONFIRMATION
    assert result.language == "de"


SHOPWARE_SHIPPED = """<html><body>
<p>Hallo Frau Berg,</p>
<p>der Status Ihrer Bestellung SW10231 hat sich geändert: sie wurde versandt.</p>
<table><tr><th>Pos.</th><th>Art.-Nr.</th><th>Bezeichnung</th><th>Menge</th>
<th>Preis</th></tr>
<tr><td>1</td><td>SW10002.3</td><td>Wanderschuh Alpin</td><td>1</td>
<td>129,99 €</td></tr>
<tr><td>2</td><td>4260123456789</td><td>Socken 3er-Pack</td><td>2</td>
<td>19,98 €</td></tr></table>
<p>Versandart: DHL Paket<br>Ihre Sendungsnummer:
<a href="https://www.dhl.de/de/privatkunden/pakete-empfangen/verfolgen.html?\
piececode=00340434554012921360">00340434554012921360</a></p>
<p>Mit freundlichen Grüßen<br>Bergsport GmbH · Tel.: 030 1500080
· Fax: 089 1234567-99<br>
Ihr Kundenkonto: 7529170342<br>IBAN: DE89 3704 0044 0532 0130 00 · BIC: COBADEFFXXX</p>
</body></html>"""


def test_shopware_shipped_de() -> None:
    assert passes_check("7529170342", "dhl_express")
    raw = shop_email(
        "Ihre Bestellung SW10231 bei Bergsport wurde versandt",
        SHOPWARE_SHIPPED,
        language="de-DE",
    )
    result = extract(raw)
    assert tracking(result) == [("00340434554012921360", "dhl_paket")]
    assert result.order_number == "SW10231"
    assert result.kind == Kind.SHIPPING_CONFIRMATION
    assert result.language == "de"


MAGENTO_SHIPPED_FR = """<html lang="fr"><body>
<h1>Merci pour votre achat, Anna</h1>
<p>Votre commande n° 000000123 a été expédiée par Colissimo.</p>
<table><tr><td>Numéro de suivi :</td><td>6A73734351883</td></tr>
<tr><td>Date d'expédition :</td><td>03/12/2024</td></tr></table>
<p>Une fois votre colis livré, donnez-nous votre avis !</p>
<p>Maison Dupont SAS · SIRET 123 456 789 00012 · TVA FR12345678901<br>
Service client : 01 23 45 67 89</p>
</body></html>"""


def test_magento_shipped_fr() -> None:
    result = extract(shop_email("Votre commande n° 000000123", MAGENTO_SHIPPED_FR))
    assert tracking(result) == [("6A73734351883", "colissimo")]
    assert result.order_number == "000000123"
    assert result.kind == Kind.SHIPPING_CONFIRMATION
    assert result.language == "fr"


def test_magento_shipped_fedex_en() -> None:
    for trap in ("080000000019", "400690161033"):
        assert passes_check(trap, "fedex"), trap
    html = """<html><body><p>Hello Anna,</p>
<p>Your order #000000881 has shipped with FedEx.</p>
<p>Tracking number: 986578788855</p>
<table><tr><td>PO number</td><td>400690161033</td></tr>
<tr><td>Account</td><td>080000000019</td></tr></table>
<p>Questions? Call 080000000019 (toll free).</p></body></html>"""
    result = extract(shop_email("Your Luma order has shipped", html))
    assert tracking(result) == [("986578788855", "fedex")]
    assert result.order_number == "000000881"


LIGHTSPEED_NL = """<html><body>
<p>Hallo Anna,</p>
<p>Je bestelling 2024-1187 is verzonden met PostNL.</p>
<p>Track &amp; Trace code: 3SABCD1234567</p>
<p>Verwachte bezorging: woensdag 4 december</p>
<p>Fietsplaats B.V. · KvK 12345678 · BTW NL123456789B01<br>
IBAN NL91 ABNA 0417 1643 00 · Klantenservice: 020 123 4567</p>
</body></html>"""


def test_dutch_shop_postnl() -> None:
    result = extract(shop_email("Je bestelling 2024-1187 is verzonden", LIGHTSPEED_NL))
    assert tracking(result) == [("3SABCD1234567", "postnl")]
    assert result.order_number == "2024-1187"
    assert result.kind == Kind.SHIPPING_CONFIRMATION
    assert result.language == "nl"


def test_spanish_shop_correos() -> None:
    text = (
        "Hola Anna:\n\nTu pedido nº 88231 ha sido enviado con Correos.\n"
        "Número de seguimiento: PQE0XI4551875986243635I\n"
        "Importe: 45,90 €\n\nTienda Sol S.L. · CIF B12345678 · Tel. 912 345 678\n"
    )
    html = "<html><body>" + "".join(f"<p>{line}</p>" for line in text.splitlines())
    result = extract(shop_email("Tu pedido 88231 ha sido enviado", html, text=text))
    assert tracking(result) == [("PQE0XI4551875986243635I", "correos")]
    assert result.order_number == "88231"
    assert result.language == "es"


def test_italian_shop_brt() -> None:
    html = """<html><body><p>Ciao Anna,</p>
<p>il tuo ordine n. 10234 è stato spedito con BRT.</p>
<p>Codice spedizione: 083224326779223</p>
<p>Non appena il pacco sarà consegnato, riceverai una conferma.</p>
<p>Bottega Srl · P.IVA 01234567890 · Tel. 02 1234 5678</p></body></html>"""
    result = extract(shop_email("Il tuo ordine 10234 è stato spedito", html))
    assert tracking(result) == [("083224326779223", "brt")]
    assert result.order_number == "10234"
    assert result.kind == Kind.SHIPPING_CONFIRMATION
    assert result.language == "it"


def test_polish_shop_dhl_with_nip_footer() -> None:
    assert passes_check("5252601815", "dhl_express")
    text = (
        "Dzień dobry,\n\nTwoje zamówienie nr 4471 zostało wysłane kurierem DHL.\n"
        "Numer przesyłki: 4294142591\n\n"
        "Sklep Przykład Sp. z o.o., ul. Prosta 1, 00-001 Warszawa\n"
        "NIP 525-260-18-15, REGON 123456785, tel. +48 22 123 45 67\n"
    )
    result = extract(
        shop_email(
            "Zamówienie nr 4471 zostało wysłane", "<p>" + text + "</p>", text=text
        )
    )
    assert tracking(result) == [("4294142591", "dhl_express")]
    assert result.order_number == "4471"
    assert result.language == "pl"


def test_swedish_shop_dhl_with_org_number() -> None:
    assert passes_check("5566597971", "dhl_express")
    html = """<html><body><p>Hej Anna,</p>
<p>Din order 88123 har skickats med DHL Express.</p>
<p>Sändningsnummer: 3318810025</p>
<p>Exempel AB · Org.nr 556659-7971 · Kundtjänst 0771-123 456</p></body></html>"""
    result = extract(shop_email("Din order 88123 har skickats", html))
    assert tracking(result) == [("3318810025", "dhl_express")]
    assert result.order_number == "88123"
    assert result.language == "sv"


@pytest.mark.parametrize(
    ("subject", "body", "language"),
    [
        (
            "Bestellbestätigung #1043",
            "Vielen Dank für Ihre Bestellung! Wir benachrichtigen Sie, sobald "
            "Ihre Bestellung versendet wurde.",
            "de",
        ),
        (
            "Order #1044 confirmed",
            "Thank you for your purchase! We're getting your order ready. "
            "You'll receive a tracking number once your order has shipped.",
            "en",
        ),
        (
            "Bevestiging van je bestelling 1045",
            "Bedankt voor je bestelling! Zodra je pakket is verzonden, "
            "ontvang je een e-mail.",
            "nl",
        ),
        (
            "Confirmación de pedido 1046",
            "¡Gracias por tu pedido! Te avisaremos en cuanto tu pedido ha sido "
            "enviado.",
            "es",
        ),
    ],
)
def test_order_confirmations_that_promise_shipping(
    subject: str, body: str, language: str
) -> None:
    # Below the order summary, a footer note in the shop's default language.
    footer = "Orders placed before 2pm are delivering today in selected cities."
    html = (
        f"<html><body><p>{body}</p><p>Total: 54,00 €</p><p>{footer}</p></body></html>"
    )
    result = extract(shop_email(subject, html))
    assert result.kind == Kind.ORDER_CONFIRMATION
    assert tracking(result) == []
    assert result.language == language

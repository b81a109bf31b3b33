"""Hard cases of real emails, each on a small message written here."""

from __future__ import annotations

import pytest

from extractors import Kind, extract

UPS = "1Z999AA10123456784"  # passes the UPS check digit
UPS_GROUPED = "1Z 999 AA1 01 2345 6784"
ROYAL_MAIL = "AB865447911GB"
DHL_PAKET = "00340434554012921360"


def message(
    body: str,
    subject: str = "Your order has shipped",
    content_type: str = "text/html; charset=utf-8",
    headers: str = "",
    to: str = "Anna Berg <anna@customer.example>",
) -> bytes:
    """Return a raw single-part message from a shop."""
    return (
        f"From: Shop <orders@shop.example>\nTo: {to}\nSubject: {subject}\n"
        f"Date: Mon, 02 Dec 2024 10:00:00 +0000\n{headers}MIME-Version: 1.0\n"
        f"Content-Type: {content_type}\n\n{body}\n"
    ).encode()


def numbers(raw: bytes) -> list[str]:
    return [shipment.tracking_number for shipment in extract(raw).shipments]


def test_forwarded_as_attachment() -> None:
    inner = message(f"<p>Tracking number: {UPS}</p>", to="kim@customer.example")
    raw = (
        b"From: Anna <anna@forwarder.example>\nTo: support@shop.example\n"
        b"Subject: Fwd: Your order has shipped\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\n'
        b"Content-Type: text/plain\n\nSee below.\n--b\n"
        b"Content-Type: message/rfc822\n\n" + inner + b"\n--b--\n"
    )
    result = extract(raw)
    assert result.customer.email == "kim@customer.example"
    assert numbers(raw) == [UPS]


FORWARD_BLOCKS = {
    "en": ("---------- Forwarded message ---------", "From", "To", "Subject"),
    "de": ("---------- Weitergeleitete Nachricht ----------", "Von", "An", "Betreff"),
    "fr": ("-------- Message transféré --------", "De", "À", "Objet"),
    "nl": ("---------- Doorgestuurd bericht ---------", "Van", "Aan", "Onderwerp"),
    "es": ("---------- Mensaje reenviado ---------", "De", "Para", "Asunto"),
    "it": ("---------- Messaggio inoltrato ---------", "Da", "A", "Oggetto"),
    "pl": ("---------- Wiadomość przekazana dalej ---------", "Od", "Do", "Temat"),
    "sv": ("---------- Vidarebefordrat meddelande ---------", "Från", "Till", "Ämne"),
    "da": ("---------- Videresendt meddelelse ----------", "Fra", "Til", "Emne"),
    "pt": ("---------- Mensagem encaminhada ---------", "De", "Para", "Assunto"),
    "cs": ("---------- Přeposlaná zpráva ----------", "Od", "Komu", "Předmět"),
}


@pytest.mark.parametrize("language", sorted(FORWARD_BLOCKS))
def test_inline_forward_customer(language: str) -> None:
    marker, sender, recipient, subject = FORWARD_BLOCKS[language]
    body = (
        f"FYI\n\n{marker}\n{sender}: Shop <orders@shop.example>\n"
        f"{recipient}: Kim Lee <kim@customer.example>\n{subject}: Order 12345\n\n"
        f"Tracking number: {UPS}\n"
    )
    raw = message(body, subject="Fwd: order", content_type="text/plain; charset=utf-8")
    result = extract(raw)
    assert result.customer.email == "kim@customer.example"
    assert result.customer.name == "Kim Lee"
    assert numbers(raw) == [UPS]


def test_html_and_text_disagree_html_wins() -> None:
    raw = (
        b"From: Shop <orders@shop.example>\nTo: anna@customer.example\n"
        b"Subject: Shipped\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/alternative; boundary="b"\n\n--b\n'
        b"Content-Type: text/plain\n\nOrder number: 111-1111111-1111111\n--b\n"
        b"Content-Type: text/html\n\n<p>Order number: 222-2222222-2222222</p>\n--b--\n"
    )
    assert extract(raw).order_number == "222-2222222-2222222"


@pytest.mark.parametrize(
    "href",
    [
        f"https://www.ups.com/track?loc=en&amp;tracknum={UPS}",
        f"https://www.ups.com/track?loc=3Den&tracknum=3D{UPS}",
        f"https://click.mail.example/?u=https%3A%2F%2Fwww.ups.com%2Ftrack%3Ftracknum%3D{UPS}",
        f"https://r.example/L0/https:%252F%252Fwww.ups.com%252Ftrack%253Ftracknum%253D{UPS}",
    ],
)
def test_link_encodings(href: str) -> None:
    raw = message(f'<p>Track your parcel: <a href="{href}">here</a></p>')
    result = extract(raw)
    assert numbers(raw) == [UPS]
    assert result.shipments[0].carrier == "ups"


def test_link_with_quoted_printable_soft_break() -> None:
    body = f'<a href=3D"https://www.ups.com/track?tracknum=3D{UPS[:8]}=\n{UPS[8:]}">Track</a>'
    raw = message(body, headers="Content-Transfer-Encoding: quoted-printable\n")
    assert numbers(raw) == [UPS]


@pytest.mark.parametrize(
    "printed",
    [
        "1Z999AA1\u00ad0123456784",
        "1Z999AA1\u200b0123456784",
        "1Z999AA1<wbr>0123456784",
        "1Z&nbsp;999&nbsp;AA1&nbsp;01&nbsp;2345&nbsp;6784",
        UPS_GROUPED,
        "\u200f1Z999AA10123456784\u200e",
    ],
)
def test_invisible_characters_and_groups(printed: str) -> None:
    raw = message(f"<p>Tracking number: <b>{printed}</b></p>")
    assert numbers(raw) == [UPS]


def test_grouped_number_by_pattern_alone() -> None:
    raw = message(f"<p>Your parcel {UPS_GROUPED} is on its way.</p>")
    assert numbers(raw) == [UPS]


def test_several_shipments() -> None:
    raw = message(
        f"<p>Tracking number: {UPS}</p><p>Tracking number: {ROYAL_MAIL}</p>"
        f'<a href="https://www.dhl.de/verfolgen.html?piececode={DHL_PAKET}">DHL</a>'
    )
    assert sorted(numbers(raw)) == sorted([UPS, ROYAL_MAIL, DHL_PAKET])


def test_adjacent_cells_do_not_run_together() -> None:
    raw = message(
        f"<table><tr><td>Order number</td><td>4711</td><td>{UPS}</td></tr></table>"
    )
    result = extract(raw)
    assert result.order_number == "4711"
    assert numbers(raw) == [UPS]


# Twelve digits as FedEx prints them, failing its check digit: only a label
# makes them tracking numbers.
FEDEX_ROWS = ["286548999999", "286548999979", "286548999989"]


def test_every_row_under_a_tracking_column_header() -> None:
    rows = "".join(
        f"<tr><td><a href='https://click.example/?q={index}'>{number}</a></td>"
        "<td><table><tr><td>In transit</td></tr></table></td></tr>"
        "<tr><td><img src='spacer.gif'></td></tr>"
        for index, number in enumerate(FEDEX_ROWS)
    )
    raw = message(
        "<p>Your FedEx packages are on their way.</p>"
        "<table><tr><th>TRACKING ID</th><th>STATUS</th></tr>"
        f"{rows}<tr><td>Phone</td><td>0800 123 4567</td></tr></table>"
    )
    assert sorted(numbers(raw)) == sorted(FEDEX_ROWS)


def test_column_header_inside_a_sentence_is_no_header() -> None:
    raw = message(
        "<p>Your FedEx packages are on their way.</p><table><tr>"
        "<td>The tracking number follows in another email</td></tr>"
        f"<tr><td>{FEDEX_ROWS[0]}</td></tr><tr><td>{FEDEX_ROWS[1]}</td></tr></table>"
    )
    assert numbers(raw) == []


@pytest.mark.parametrize(
    "text",
    [
        "Phone: +49 171 1813432",
        "Call us on +1 800 742 5877",
        "Postcode 10115 Berlin",
        "Date: 2024-12-02",
        "Total: 1234567891.00 EUR",
        "IBAN DE89370400440532013000",
        "Invoice number 1234567891",
        "Reference: 986578788855",
    ],
)
def test_other_numbers_are_not_tracking_numbers(text: str) -> None:
    raw = message(f"<p>Your DHL Express and FedEx order</p><p>{text}</p>")
    assert numbers(raw) == []


def test_order_number_is_not_tracking_number() -> None:
    raw = message("<p>Order number: 1234567891</p><p>Shipped with DHL Express.</p>")
    result = extract(raw)
    assert result.order_number == "1234567891"
    assert numbers(raw) == []


def test_carrier_named_without_number() -> None:
    raw = message("<p>Your order 4711 has been shipped with DHL Paket.</p>")
    result = extract(raw)
    assert result.shipments == []
    assert result.named_carrier == "dhl_paket"


def test_multipart_related() -> None:
    raw = (
        b"From: Shop <orders@shop.example>\nTo: anna@customer.example\n"
        b"Subject: Shipped\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/related; boundary="b"\n\n--b\n'
        b"Content-Type: text/html\n\n<p>Tracking number: " + UPS.encode() + b"</p>\n"
        b"--b\nContent-Type: image/png\nContent-ID: <logo>\n\niVBORw0KGgo=\n--b--\n"
    )
    assert numbers(raw) == [UPS]


def test_text_only() -> None:
    raw = message(f"Tracking number: {UPS}", content_type="text/plain; charset=utf-8")
    assert numbers(raw) == [UPS]


def test_unclosed_html() -> None:
    raw = message(f"<html><body><table><tr><td>Tracking number<td>{UPS}<div><div><p>")
    assert numbers(raw) == [UPS]


def test_unlabelled_8bit_charset() -> None:
    body = "<p>Vielen Dank für Ihre Bestellung</p><p>Bestellnummer: 4711</p>"
    raw = message("BODY", subject="Bestellbestaetigung", content_type="text/html")
    raw = raw.replace(b"BODY", body.encode("latin-1"))
    result = extract(raw)
    assert result.order_number == "4711"
    assert result.kind == Kind.ORDER_CONFIRMATION


def test_right_to_left_marks_around_order_number() -> None:
    raw = message("<p>Order #\u202b205-2169302-5352337\u202c</p>")
    assert extract(raw).order_number == "205-2169302-5352337"


def test_link_number_differs_from_visible() -> None:
    raw = message(
        f"<p>Tracking number: {ROYAL_MAIL}</p>"
        '<a href="https://www.royalmail.com/track-your-item#/tracking-results/'
        'RR123456785GB">Track</a>'
    )
    assert numbers(raw) == [ROYAL_MAIL]


def test_label_number_failing_check_digit_is_taken() -> None:
    raw = message("<p>Tracking number: 1Z2345YY0678901234</p>")
    assert numbers(raw) == ["1Z2345YY0678901234"]


def test_pattern_number_failing_check_digit_is_not_taken() -> None:
    raw = message("<p>Your parcel 1Z2345YY0678901234 is on its way.</p>")
    assert numbers(raw) == []


def test_schema_org_json_ld() -> None:
    script = (
        '{"@context": "https://schema.org", "@type": "ParcelDelivery",'
        f' "trackingNumber": "{UPS}", "carrier": {{"@type": "Organization",'
        ' "name": "UPS"}, "partOfOrder": {"@type": "Order", "orderNumber": "A-17",'
        ' "orderStatus": "https://schema.org/OrderInTransit"}}'
    )
    raw = message(f'<script type="application/ld+json">{script}</script><p>Hi</p>')
    result = extract(raw)
    assert result.order_number == "A-17"
    assert numbers(raw) == [UPS]
    assert result.shipments[0].carrier == "ups"
    assert result.kind == Kind.SHIPPING_CONFIRMATION


def test_customer_from_to_header() -> None:
    result = extract(message("<p>Thank you for your order</p>"))
    assert result.customer.email == "anna@customer.example"
    assert result.customer.name == "Anna Berg"


def test_tracking_number_after_an_order_label() -> None:
    raw = message(
        "<p>Your parcel is on its way with UPS.</p>",
        subject=f"Your order {UPS} has shipped",
    )
    result = extract(raw)
    assert result.order_number is None
    assert numbers(raw) == [UPS]


def test_plain_order_number_stays_order() -> None:
    raw = message(
        "<p>Your parcel is on its way with UPS.</p>",
        subject="Your order 4711-0815 has shipped",
    )
    result = extract(raw)
    assert result.order_number == "4711-0815"
    assert numbers(raw) == []


@pytest.mark.parametrize(
    "line",
    [
        "Ordre ID QSOYBTFLG - På vej",
        "Din ordre med referencen QSOYBTFLG er blevet afsendt.",
        "Objednávka ID QSOYBTFLG - Zásilka na cestě",
        "Vaše objednávka s označením QSOYBTFLG je na cestě.",
        "A sua encomenda com a referência QSOYBTFLG já foi enviada.",
        "Votre commande avec la référence QSOYBTFLG a été expédiée.",
        "Uw bestelling met referentie QSOYBTFLG is verzonden.",
    ],
)
def test_order_reference_phrasings(line: str) -> None:
    raw = message(f"<p>{line}</p>", subject="Update")
    assert extract(raw).order_number == "QSOYBTFLG"


GERMAN_TEXT = (
    "<p>Ihr Paket kommt heute. Die Sendung wurde an den Zusteller übergeben "
    "und wird Ihnen zwischen 10 und 14 Uhr zugestellt. Wenn Sie nicht zu Hause "
    "sind, geben wir das Paket bei einem Nachbarn ab oder bringen es zu einer "
    "Filiale. Mit der App können Sie die Zustellung auf dem Weg ändern.</p>"
)


def test_text_overrules_a_template_lang_attribute() -> None:
    raw = message(f"<html lang='en'><body>{GERMAN_TEXT}</body></html>")
    assert extract(raw).language == "de"


def test_declared_lang_kept_for_a_mixed_text() -> None:
    body = "<p>Your parcel is on its way and will arrive with the driver.</p>"
    raw = message(f"<html lang='de'><body>{body}{GERMAN_TEXT}</body></html>")
    assert extract(raw).language == "de"


def test_function_words_name_an_undeclared_language() -> None:
    body = (
        "<p>Dziękujemy, że jesteś z nami. Nie musisz nic robić: wszystko "
        "zostało przygotowane przez nasz zespół dla Ciebie.</p>"
    )
    raw = message(body, subject="Info")
    assert extract(raw).language == "pl"


def test_carrier_email_labels_its_own_number() -> None:
    # Twenty digits: the pattern of USPS's and others' formats, not FedEx's.
    raw = message("<p>Tracking number: 61290912345678912345</p>").replace(
        b"From: Shop <orders@shop.example>", b"From: FedEx <TrackingUpdates@fedex.com>"
    )
    shipments = extract(raw).shipments
    assert [s.tracking_number for s in shipments] == ["61290912345678912345"]
    assert shipments[0].carrier == "fedex"


@pytest.mark.parametrize(
    ("line", "number"),
    [
        ("Dziś doręczamy Twoją paczkę 1000399528451U", "1000399528451U"),
        ("Your package JY26CAA0D000551012 has been collected.", "JY26CAA0D000551012"),
        ("Ihre Sendung 00340434554012921360 kommt heute.", "00340434554012921360"),
    ],
)
def test_number_after_a_parcel_phrase(line: str, number: str) -> None:
    raw = message(f"<p>{line}</p>", subject="Update")
    assert numbers(raw) == [number]


def test_polish_delivery_today_is_out_for_delivery() -> None:
    raw = message("<p>Dziś doręczamy Twoją paczkę 1000399528451U</p>", subject="DPD")
    assert extract(raw).kind == Kind.OUT_FOR_DELIVERY


@pytest.mark.parametrize(
    "heading", ["ORDER SHIPPED", "ORDER SUMMARY", "BESTELLUNG VERSANDT"]
)
def test_heading_after_order_label_is_no_order_number(heading: str) -> None:
    raw = message(f"<h1>{heading} | More goodies are coming!</h1><p>Thank you.</p>")
    assert extract(raw).order_number is None


def test_shop_link_tracking_parameter() -> None:
    href = f"https://track.shop.example/order-status?tracking-number={UPS}"
    raw = message(f"<p>Your order is on its way.</p><a href='{href}'>Track</a>")
    assert numbers(raw) == [UPS]


@pytest.mark.parametrize(
    "value",
    ["a8f3c9e2d1b04f6e9a7c", "1Z999AA10123456785", "ABCDEFGH12345678", "12345"],
)
def test_parameter_value_outside_carrier_formats_is_not_taken(value: str) -> None:
    href = f"https://track.shop.example/order-status?tracking-number={value}"
    raw = message(f"<p>Your order is on its way.</p><a href='{href}'>Track</a>")
    assert numbers(raw) == []


def test_parcel_shaped_parameter_value_is_taken() -> None:
    href = (
        "https://track.shop.example/order-status?tracking-number=SH123456789012345678"
    )
    raw = message(f"<p>Your order is on its way.</p><a href='{href}'>Track</a>")
    assert numbers(raw) == ["SH123456789012345678"]


@pytest.mark.parametrize("name", ["tracking", "trk", "tracking_id"])
def test_click_tracking_parameter_is_no_tracking_number(name: str) -> None:
    href = f"https://shop.example/sale?{name}={UPS}"
    raw = message(f"<p>Your order is on its way.</p><a href='{href}'>Track</a>")
    assert numbers(raw) == []


def test_order_is_here_subject_is_delivered() -> None:
    raw = message("<p>Enjoy!</p>", subject="Your order is HERE!")
    assert extract(raw).kind == Kind.DELIVERED


def test_carrier_named_but_not_tracked_is_other() -> None:
    raw = message(
        "<p>Your Vinted Go parcel has arrived and is ready to collect.</p>"
        "<p>Tracking code: 1788036855089520</p>"
    )
    shipments = extract(raw).shipments
    assert [s.tracking_number for s in shipments] == ["1788036855089520"]
    assert shipments[0].carrier == "other"
    assert shipments[0].tracking_url is None


def test_untracked_carrier_sender_owns_its_labelled_number() -> None:
    raw = message(
        "<p>Je pakket 77116398 ligt voor je klaar.</p>"
        "<p>Het team van Mondial Relay by InPost</p>"
    ).replace(b"From: Shop <orders@shop.example>", b"From: <noreply@mondialrelay.fr>")
    shipments = extract(raw).shipments
    assert [(s.tracking_number, s.carrier) for s in shipments] == [
        ("77116398", "other")
    ]


@pytest.mark.parametrize(
    ("subject", "body", "kind"),
    [
        ("Info", "Twoja paczka została dzisiaj dostarczona o 11:18.", Kind.DELIVERED),
        ("Je pakket ligt voor je klaar", "Goed nieuws!", Kind.AVAILABLE_FOR_PICKUP),
        (
            "Update",
            "Your package has been collected by the local carrier in your country.",
            Kind.SHIPPING_CONFIRMATION,
        ),
    ],
)
def test_stage_phrases_of_carrier_notices(subject: str, body: str, kind: Kind) -> None:
    raw = message(f"<p>{body}</p><p>Tracking number: {UPS}</p>", subject=subject)
    assert extract(raw).kind == kind


def test_parcel_phrase_skips_shipment_id() -> None:
    raw = message(
        "<p>Tu envío #000000245 del pedido #000000612</p>"
        f"<p>Número de seguimiento: {UPS}</p>"
    )
    assert numbers(raw) == [UPS]


def test_parcel_phrase_number_loses_to_a_labelled_one() -> None:
    raw = message(
        "<p>Your parcel 4711000123 has left our warehouse.</p>"
        f"<p>Tracking number: {UPS}</p>"
    )
    assert numbers(raw) == [UPS]


def test_shop_email_with_tracking_table_is_shipping() -> None:
    raw = message(
        "<p>We have finished processing your order.</p><table>"
        "<tr><th>Provider</th><th>Tracking Number</th></tr>"
        f"<tr><td>UPS</td><td>{UPS}</td></tr></table>",
        subject="Your Kestrel Audio order is now complete",
    )
    assert extract(raw).kind == Kind.SHIPPING_CONFIRMATION


def test_swedish_order_with_hash_number() -> None:
    raw = message(
        "<p>Vi har tagit emot din beställning #6204 och den behandlas nu.</p>",
        subject="Din beställning har tagits emot",
    )
    assert extract(raw).order_number == "6204"


def test_short_german_text_overrules_lang_en() -> None:
    body = (
        "<p>Hallo Lena, deine Bestellung ist unterwegs. Verfolge deine Sendung, "
        "um den Lieferstatus zu sehen.</p><p>Artikel in dieser Sendung</p>"
        "<p>Bei Fragen antworte einfach auf diese E-Mail.</p>"
    )
    raw = message(
        f"<html lang='en'><body>{body}</body></html>",
        subject="Eine Sendung aus Bestellung #1931 ist unterwegs",
    )
    assert extract(raw).language == "de"


def test_labelled_number_takes_the_one_named_carrier() -> None:
    raw = message(
        "<p>Your order was shipped with PostNord.</p>"
        "<p>Tracking number: 6129 0912 3456 7891 2345</p>"
    )
    shipments = extract(raw).shipments
    assert [s.tracking_number for s in shipments] == ["61290912345678912345"]
    assert shipments[0].carrier == "postnord"


def test_untracked_carrier_keeps_its_printed_name() -> None:
    raw = message("<p>Shipped with Mondial Relay.</p><p>Tracking number: 77116398</p>")
    shipments = extract(raw).shipments
    assert [(s.carrier, s.carrier_name) for s in shipments] == [
        ("other", "Mondial Relay")
    ]
    assert "carrier_name" not in shipments[0].to_json()


def test_order_number_in_a_link_to_the_shop() -> None:
    href = "https://www.shop.example/invoice?orderID=111-4396615-4512227&ref_=mail"
    raw = message(f"<p>Your parcel is waiting.</p><a href='{href}'>Invoice</a>")
    assert extract(raw).order_number == "111-4396615-4512227"


def test_order_parameter_of_another_site_is_ignored() -> None:
    href = "https://ads.example.net/c?order_id=4711-0815"
    raw = message(f"<p>Your parcel is waiting.</p><a href='{href}'>Offer</a>")
    assert extract(raw).order_number is None


def test_order_label_wins_over_a_link_parameter() -> None:
    href = "https://www.shop.example/account?order_id=99999"
    raw = message(f"<p>Order number: 4711</p><a href='{href}'>Account</a>")
    assert extract(raw).order_number == "4711"

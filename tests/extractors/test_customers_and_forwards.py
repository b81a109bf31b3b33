"""The customer of an email: recipients, encoded names, forwards and replies."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from extractors import extract

UPS = "1Z999AA10123456784"
UPS_OLD = "1Z12345E6678912343"


def message(
    body: str,
    to: str = "Bob Buyer <bob@example.org>",
    subject: str = "Your order #8801 has shipped",
    sender: str = "Acme Support <support@acme.example>",
) -> bytes:
    """Return a raw plain-text message."""
    return (
        f"From: {sender}\nTo: {to}\nSubject: {subject}\nMIME-Version: 1.0\n"
        f"Content-Type: text/plain; charset=utf-8\n\n{body}\n"
    ).encode()


def numbers(raw: bytes) -> list[str]:
    return sorted(shipment.tracking_number for shipment in extract(raw).shipments)


QUOTED = (
    "-----Original Message-----\nFrom: Bob Buyer <bob@example.org>\n"
    "Sent: Monday, December 2, 2024 9:00\nTo: support@acme.example\n"
    "Subject: Where is my order?\n\n"
    f"Hi, you sent me {UPS_OLD} but it does not work.\n"
)


def test_reply_quoting_original_keeps_customer() -> None:
    body = f"Hi Bob,\nhere is the right one.\nTracking number: {UPS}\n\n{QUOTED}"
    raw = message(body, subject="AW: Where is my order?")
    result = extract(raw)
    assert result.customer.email == "bob@example.org"
    assert result.forwarded is None
    assert numbers(raw) == [UPS]


def test_reply_without_reply_subject() -> None:
    note = "Hi Bob,\nsorry for the trouble. " + "We checked your order again. " * 15
    raw = message(f"{note}\nTracking number: {UPS}\n\n{QUOTED}")
    result = extract(raw)
    assert result.customer.email == "bob@example.org"
    assert numbers(raw) == [UPS]


def test_inline_forward_keeps_original_customer() -> None:
    body = (
        "FYI\n\n---------- Forwarded message ---------\n"
        "From: Acme <orders@acme.example>\nTo: Kim Lee <kim@customer.example>\n"
        f"Subject: Your order has shipped\n\nHi Kim,\nTracking number: {UPS}\n"
    )
    raw = message(body, to="ops@acme.example", subject="Fwd: Your order has shipped")
    result = extract(raw)
    assert result.customer.email == "kim@customer.example"
    assert result.forwarded is not None
    assert numbers(raw) == [UPS]


def _with_attachment(note: str, subject: str) -> bytes:
    inner = EmailMessage()
    inner["From"] = "Acme <orders@acme.example>"
    inner["To"] = "Bob Buyer <bob@example.org>"
    inner["Subject"] = "Your order #4415 has shipped"
    inner.set_content(f"Hi Bob,\nyour order #4415 has shipped.\nTracking number: {UPS}")
    outer = EmailMessage()
    outer["From"] = "anna@acme.example"
    outer["To"] = "ops@acme.example"
    outer["Subject"] = subject
    outer.set_content(note)
    outer.add_attachment(inner)
    return bytes(outer)


def test_attached_message_behind_long_note() -> None:
    note = "Please look at the attached shipping email of this customer. " * 10
    raw = _with_attachment(note, "Customer complaint about shipping")
    result = extract(raw)
    assert result.customer.email == "bob@example.org"
    assert result.forwarded == "attached message/rfc822"
    assert numbers(raw) == [UPS]


def test_outer_message_with_own_shipment_wins() -> None:
    note = (
        f"Hi Bob, your replacement has shipped. Tracking number: {UPS_OLD}. "
        + "We attached the first shipping email for reference. " * 8
    )
    raw = _with_attachment(note, "Your replacement has shipped")
    result = extract(raw)
    assert result.customer.email == "ops@acme.example"
    assert numbers(raw) == [UPS_OLD]


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("orders-archive@acme.example, Bob <bob@example.org>", "bob@example.org"),
        ("copy@mail.acme.example, bob@example.org", "bob@example.org"),
        ("archive@acme.example, team@acme.example", "archive@acme.example"),
    ],
)
def test_recipient_outside_sender_domain(to: str, expected: str) -> None:
    result = extract(message(f"Tracking number: {UPS}", to=to))
    assert result.customer.email == expected


@pytest.mark.parametrize(
    ("to", "name"),
    [
        ("=?utf-8?q?J=C3=BCrgen_<Einkauf>?= <j@customer.example>", "Jürgen <Einkauf>"),
        ("=?utf-8?q?J=C3=BCrgen=0D=0ABcc:_x@evil.example?= <j@customer.example>",
         "Jürgen Bcc: x@evil.example"),
        ("=?utf-8?b?SsO8cmdlbg==?= =?utf-8?q?_M=C3=BCller?= <j@customer.example>",
         "Jürgen Müller"),
        ("\"Müller, Jürgen\" <j@customer.example>", "Müller, Jürgen"),
        # 8-bit UTF-8 in the header, which RFC 5322 forbids but shops send.
        ("Jürgen Müller <j@customer.example>", "Jürgen Müller"),
    ],
)  # fmt: skip
def test_encoded_display_names(to: str, name: str) -> None:
    result = extract(message(f"Tracking number: {UPS}", to=to))
    assert result.customer.email == "j@customer.example"
    assert result.customer.name == name


def test_encoded_line_break_never_reaches_name() -> None:
    to = "=?utf-8?q?Bob=0D=0ABcc:_evil@attacker.example?= <bob@example.org>"
    result = extract(message(f"Tracking number: {UPS}", to=to))
    assert result.customer.email == "bob@example.org"
    assert result.customer.name is not None
    assert "\r" not in result.customer.name
    assert "\n" not in result.customer.name


@pytest.mark.parametrize(
    ("greeting", "name"),
    [
        ("Hi Christopher, your package is on the way!", "Christopher"),
        ("Hello GEORGE NIKOLARELIS,", "GEORGE NIKOLARELIS"),
        ("Hi, Jeremy!", "Jeremy"),
        ("Hi Jacob B.,", "Jacob B."),
        ("Hi, Anna Berg. Your packages are out for delivery today.", "Anna Berg"),
        ("Hi Mr T Smith", "Mr T Smith"),
        ("Sehr geehrte Frau Weiß,", "Frau Weiß"),
        ("Bonjour Élodie Marchand,", "Élodie Marchand"),
        ("Gentile Andrea,", "Andrea"),
        ("Szanowna Pani Zofia,", "Pani Zofia"),
        ("Hi kyle,", "kyle"),
    ],
)
def test_greeting_names_the_customer(greeting: str, name: str) -> None:
    raw = message(f"{greeting}\nTracking number: {UPS}", to="bob@example.org")
    assert extract(raw).customer.name == name


@pytest.mark.parametrize(
    "greeting",
    [
        "Hello there,",
        "Hello again,",
        "Hey you,",
        "Hallo zusammen,",
        "Hello,",
        "Hello ,",
        "Dear Valued Customer,",
        "Liebe Kundin, lieber Kunde,",
        "Sehr geehrte Damen und Herren,",
        "Szanowny Odbiorco,",
        "Bonjour Madame,",
        "Hi ya jabroni,",
        "Hello Anna and welcome to our shop",
        "Hi, Thanks for your order.",
        "Hey 1Z999AA10123456784,",
    ],
)
def test_greeting_without_a_name(greeting: str) -> None:
    raw = message(f"{greeting}\nTracking number: {UPS}", to="bob@example.org")
    assert extract(raw).customer.name is None


def test_to_display_name_wins_over_the_greeting() -> None:
    raw = message(f"Hi Bobby,\nTracking number: {UPS}")
    assert extract(raw).customer.name == "Bob Buyer"

"""Shop rule files: parsing, checks with line numbers, and their candidates."""

from __future__ import annotations

import time

import pytest

from extractors import extract
from extractors.model import FieldName
from extractors.shoprules import RuleFileError, parse_rules

# An email the generic layers get wrong: an in-house order number and a
# freight-bill number of a haulier bcctrack has no format for.
FURNITURE_EMAIL = b"""\
From: Moebel Krause <versand@moebel-krause.example>
To: Petra Schmidt <petra.schmidt@example.de>
Subject: Ihre Lieferung - Vorgang 2024/MK/0815
Content-Type: text/html; charset=utf-8

<html><body><table>
<tr><td>Vorgang</td><td class="vorgang">2024/MK/0815</td></tr>
<tr><td>Frachtbrief</td><td class="fb">HLM-7741-2290-3318</td></tr>
<tr><td>Kundennummer</td><td>554433</td></tr>
</table><p>Hotline: 0800 123 4567</p></body></html>
"""

GOOD_RULES = """\
# Moebel Krause
[order_number]
selector = "td.vorgang"

[tracking_number]
label = "Frachtbrief"
regex = '(?P<value>HLM-\\d{4}-\\d{4}-\\d{4})'
carrier = "other"

[customer_name]
regex = 'Guten Tag (?P<value>[A-Z][a-z]+ [A-Z][a-z]+)'
source = "text"

[kind]
shipping_confirmation = 'ihre lieferung'
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(RuleFileError) as caught:
        parse_rules(text, "shop.toml")
    return [str(problem) for problem in caught.value.problems]


def test_rules_fix_what_generic_extraction_misses() -> None:
    generic = extract(FURNITURE_EMAIL)
    assert generic.order_number is None
    assert generic.shipments == []

    fixed = extract(FURNITURE_EMAIL, parse_rules(GOOD_RULES, "krause.toml"))
    assert fixed.order_number == "2024/MK/0815"
    assert [s.tracking_number for s in fixed.shipments] == ["HLM774122903318"]
    assert fixed.shipments[0].carrier == "other"
    assert fixed.kind == "shipping_confirmation"
    assert fixed.customer.email == "petra.schmidt@example.de"


def test_fired_rule_named_in_evidence() -> None:
    fixed = extract(FURNITURE_EMAIL, parse_rules(GOOD_RULES, "krause.toml"))
    fired = [c for c in fixed.candidates if c.evidence.extractor == "rules"]
    reasons = {c.field: c.evidence.reason for c in fired if c.accepted}
    assert (
        reasons[FieldName.ORDER_NUMBER] == "rule [order_number] in krause.toml, line 2"
    )
    assert reasons[FieldName.TRACKING_NUMBER].startswith("rule [tracking_number]")


def test_disabled_layer_candidates_dropped() -> None:
    email = (
        b"From: shop@shop.example\nTo: c@example.com\nSubject: Order 4711 shipped\n\n"
        b"Order number: 4711\nTracking number: 1Z999AA10123456784\n"
    )
    assert [s.tracking_number for s in extract(email).shipments] == [
        "1Z999AA10123456784"
    ]
    rules = parse_rules('[tracking_number]\ndisable = ["labels", "patterns"]\n', "s")
    assert extract(email, rules).shipments == []
    assert extract(email, rules).order_number == "4711"


def test_fixed_carrier_applies_to_every_shipment() -> None:
    email = (
        b"From: shop@shop.example\nTo: c@example.com\nSubject: shipped\n\n"
        b"Tracking number: 1Z999AA10123456784\n"
    )
    rules = parse_rules('[carrier]\nvalue = "dhl_paket"\n', "s")
    shipments = extract(email, rules).shipments
    assert [s.carrier for s in shipments] == ["dhl_paket"]


def test_customer_email_rule_wins_over_to() -> None:
    email = (
        b"From: shop@shop.example\nTo: orders-archive@shop.example\nSubject: x\n\n"
        b"Customer: real.customer@example.com\n"
    )
    rules = parse_rules('[customer_email]\nlabel = "Customer"\n', "s")
    assert extract(email, rules).customer.email == "real.customer@example.com"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[order_number\nregex = 'x'\n", "line 1: TOML syntax error"),
        ("[order_number]\nregex = x\n", "line 2: TOML syntax error"),
        ("[order_nummer]\nregex = 'x'\n", "line 1: unknown table [order_nummer]"),
        ("[order_number]\nlable = 'x'\n", "line 2: [order_number] has no key 'lable'"),
        (
            "\n[order_number]\nregex = '(unclosed'\n",
            "line 3: [order_number] regex is not a valid regular expression",
        ),
        (
            "[order_number]\nselector = 'td..x'\n",
            "line 2: [order_number] selector is not a valid CSS selector",
        ),
        (
            "[order_number]\nregex = '(a|aa)+$'\n",
            "line 2: [order_number] regex takes longer than 200 ms",
        ),
        ("[tracking_number]\nregex = '(\\d+)(\\w+)'\n", "name the one with the value"),
        (
            "[tracking_number]\nregex = 'x'\ncarrier = 'dhl'\n",
            "line 3: [tracking_number] carrier = 'dhl' is not a carrier slug",
        ),
        ("[kind]\nshipped = 'x'\n", "line 2: [kind] has no kind 'shipped'"),
        (
            "[order_number]\nregex = 'x'\ndisable = ['guessing']\n",
            "line 3: [order_number] disable names unknown layers",
        ),
        (
            "[order_number]\nsource = 'subject'\n",
            "line 1: [order_number] finds nothing",
        ),
        (
            "[order_number]\nregex = 5\n",
            "line 2: [order_number] regex must be a non-empty string",
        ),
    ],
)
def test_invalid_rules_named_with_line(text: str, expected: str) -> None:
    problems = _problems(text)
    assert any(
        problem.startswith(expected) or expected in problem for problem in problems
    ), problems


def test_every_problem_reported_at_once() -> None:
    problems = _problems(
        "[order_number]\nregex = '(x'\n\n[kind]\nshipped = 'y'\n\n[oops]\na = 1\n"
    )
    assert len(problems) == 3


def test_catastrophic_pattern_stopped_at_run_time() -> None:
    # The pattern passes the load-time probes but backtracks on this input; a
    # tiny time limit stands in for a long email.
    rules = parse_rules(
        "[order_number]\nregex = '(x+x+)+y'\n", "slow.toml", timeout=0.2
    )
    rules.timeout = 0.000_001
    email = b"From: a@shop.example\nSubject: s\n\n" + b"x" * 40 + b"\n"
    started = time.monotonic()
    extraction = extract(email, rules)
    assert time.monotonic() - started < 5
    assert any("rule [order_number]" in defect for defect in extraction.defects)
    assert extraction.order_number is None


def test_slow_rule_stopped_by_email_budget() -> None:
    # Each match stays under the per-match limit, but a long email has many
    # lines; the rule set's budget for the email stops it.
    rules = parse_rules(
        "[order_number]\nregex = '(?:\\w|\\d){0,20}(?:\\w|\\d){0,20}$'\n",
        "slow.toml",
        timeout=0.2,
    )
    lines = b"\n".join(b"word" * 50 + b"!" for _ in range(20_000))
    email = b"From: a@shop.example\nSubject: s\n\n" + lines + b"\n"
    extraction = extract(email, rules)
    assert any("used up their 2.0 s" in defect for defect in extraction.defects)

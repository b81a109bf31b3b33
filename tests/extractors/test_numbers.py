"""Reading one tracking number where a label or an element points."""

from __future__ import annotations

import pytest

from extractors.numbers import read_number, read_whole_number

UPS = "1Z999AA10123456784"
DHL_PAKET = "00340434554012921360"


@pytest.mark.parametrize(
    ("printed", "number", "carrier"),
    [
        (UPS, UPS, None),
        (f"UPS {UPS}", UPS, "ups"),
        (f"UPS: {UPS}", UPS, "ups"),
        (f"DHL {DHL_PAKET}", DHL_PAKET, "dhl_paket"),
        ("DHL 3318810025", "3318810025", "dhl_express"),
        ("DHL 123456789012", "123456789012", "dhl_paket"),
        ("1Z 999 AA1 01 2345 6784", UPS, None),
        ("0034 0434 5540 1292 1360", DHL_PAKET, None),
        ("RR 123 456 785 DE", "RR123456785DE", None),
        ("Z 607 9557 609", "Z6079557609", None),
        # Printed in groups but in no format, or failing its check: all of
        # the groups, never a shorter join that fits a format by chance.
        ("6129 0912 3456 7891 2345", "61290912345678912345", None),
        ("9400 1000 0000 0000 0000 00", "9400100000000000000000", None),
        ("9274 8902 4106 3755 3123 4567 89", "92748902410637553123456789", None),
    ],
)
def test_number_with_prefix_or_groups(
    printed: str, number: str, carrier: str | None
) -> None:
    found = read_number(printed)
    assert found is not None
    assert found.number == number
    assert found.carrier == carrier


@pytest.mark.parametrize(
    ("line", "number"),
    [
        (f"{UPS} 12.03.2024", UPS),
        (f"{DHL_PAKET} 2 Pakete", DHL_PAKET),
        (f"{UPS}, shipped today", UPS),
        ("3318810026 4711", "3318810026"),
        ("4294142591 23", "4294142591"),
    ],
)
def test_number_stops_before_what_follows(line: str, number: str) -> None:
    found = read_number(line)
    assert found is not None
    assert found.number == number


@pytest.mark.parametrize(
    "text",
    [
        "will follow",
        "Ref 12345678",
        "Call 0800 555 2368",
        "N/A",
        "0",
        "{{ tracking_number }}",
        "12.03.2024",
        "Tracking number: 1Z999AA10123456784",
    ],
)
def test_no_number(text: str) -> None:
    assert read_number(text) is None


@pytest.mark.parametrize(
    ("text", "whole"),
    [
        (UPS, True),
        (f"  UPS {UPS} ", True),
        (f"{UPS}.", True),
        ("To be confirmed", False),
        ("Call us: 0800 123 4567", False),
        (f"{UPS} (2 parcels)", False),
    ],
)
def test_whole_text_is_one_number(text: str, whole: bool) -> None:
    assert (read_whole_number(text) is not None) == whole

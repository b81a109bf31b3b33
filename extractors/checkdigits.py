"""Check-digit algorithms of tracking-number formats.

Each function takes the payload (the characters the check digit covers) and
the check character, and returns whether they agree. The carrier definitions
name the algorithm and its parameters; ``verify`` dispatches on the name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

_ALPHABET_36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)


class CheckDigitError(ValueError):
    """A carrier definition names an unknown algorithm or invalid parameters."""


def _digit_value(char: str) -> int:
    # UPS maps letters onto digits with (code point - 3) mod 10: A=2, B=3, ...
    if char.isdigit():
        return int(char)
    return (ord(char) - 3) % 10


def mod10(payload: str, check: str, weights: Sequence[int], from_right: bool) -> bool:
    """Weighted sum modulo 10, with the check digit making the sum a multiple of 10.

    ``weights`` repeat over the payload from its first character, or from its
    last when ``from_right`` is set (GS1 and SSCC numbers weight 3 from the right).
    """
    chars = payload[::-1] if from_right else payload
    total = sum(
        _digit_value(char) * weights[i % len(weights)] for i, char in enumerate(chars)
    )
    return check.isdigit() and (10 - total % 10) % 10 == int(check)


def luhn(payload: str, check: str) -> bool:
    """The Luhn algorithm: double every second digit from the right."""
    total = 0
    for i, char in enumerate(reversed(payload)):
        value = int(char) * (2 if i % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return check.isdigit() and (10 - total % 10) % 10 == int(check)


def mod11(payload: str, check: str, weights: Sequence[int]) -> bool:
    """Weighted sum modulo 11, then modulo 10 (FedEx Express)."""
    total = sum(int(char) * weights[i % len(weights)] for i, char in enumerate(payload))
    return check.isdigit() and total % 11 % 10 == int(check)


def mod7(payload: str, check: str) -> bool:
    """The payload as a number modulo 7 (DHL Express waybills)."""
    return check.isdigit() and int(payload) % 7 == int(check)


def s10(payload: str, check: str) -> bool:
    """UPU S10: weights 8 6 4 2 3 5 9 7, 11 minus the sum modulo 11."""
    if len(payload) != len(_S10_WEIGHTS) or not payload.isdigit():
        return False
    total = sum(int(char) * w for char, w in zip(payload, _S10_WEIGHTS, strict=True))
    expected = 11 - total % 11
    expected = {10: 0, 11: 5}.get(expected, expected)
    return check.isdigit() and expected == int(check)


def mod37_36(payload: str, check: str) -> bool:
    """ISO/IEC 7064 MOD 37,36 hybrid system (DPD parcel numbers)."""
    product = 36
    for char in payload:
        total = (product + _ALPHABET_36.index(char)) % 36 or 36
        product = total * 2 % 37
    expected = (37 - product) % 36
    return _ALPHABET_36[expected] == check


_Verifier = Callable[[str, str, dict[str, object]], bool]


def _weights(params: dict[str, object], default: Sequence[int]) -> list[int]:
    value = params.get("weights", default)
    if not isinstance(value, list) or not all(isinstance(w, int) for w in value):
        raise CheckDigitError(f"weights must be a list of integers, not {value!r}")
    return value


_VERIFIERS: dict[str, _Verifier] = {
    "mod10": lambda p, c, params: mod10(
        p, c, _weights(params, (3, 1)), bool(params.get("from_right", False))
    ),
    "luhn": lambda p, c, params: luhn(p, c),
    "mod11": lambda p, c, params: mod11(p, c, _weights(params, (3, 1, 7))),
    "mod7": lambda p, c, params: mod7(p, c),
    "s10": lambda p, c, params: s10(p, c),
    "mod37_36": lambda p, c, params: mod37_36(p, c),
}

ALGORITHMS = frozenset(_VERIFIERS)


def verify(algorithm: str, payload: str, check: str, params: dict[str, object]) -> bool:
    """Return whether ``check`` is the check character of ``payload``."""
    try:
        verifier = _VERIFIERS[algorithm]
    except KeyError:
        raise CheckDigitError(
            f"unknown check-digit algorithm {algorithm!r}; "
            f"use one of {', '.join(sorted(ALGORITHMS))}"
        ) from None
    try:
        return verifier(payload, check, params)
    except ValueError:
        # A letter where the algorithm needs a digit: not a valid number.
        return False

"""Sender verification: does a message come from the shop it was sent to?

A BCC address is a write capability, so a message triggers customer email
only when its sender is verified against the shop's sender domains.
"""

from __future__ import annotations

from dataclasses import dataclass

from extractors.message import Address, header_addresses

POLICY_DOMAIN = "domain"


@dataclass(frozen=True)
class SenderCheck:
    """The check that was applied to a message and its result."""

    policy: str
    verified: bool
    detail: str


def domain_matches(domain: str, allowed: list[str]) -> bool:
    """Tell whether ``domain`` is one of ``allowed`` or a subdomain of one."""
    domain = domain.lower().rstrip(".")
    if not domain:
        return False
    return any(domain == item or domain.endswith("." + item) for item in allowed)


def _domain_of(address: str) -> str:
    parsed = header_addresses(address)
    if not parsed:
        return ""
    return parsed[0].domain


def check_sender_domain(
    sender_domains: list[str], from_: list[Address], mail_from: str
) -> SenderCheck:
    """Verify by domain: the From: or envelope sender's domain is the shop's.

    A subdomain of a listed domain counts, because shops send through mail
    services whose bounce domain is a subdomain of the From: domain.
    """
    candidates = [(f"From: {a.domain}", a.domain) for a in from_ if a.domain]
    envelope_domain = _domain_of(mail_from) if mail_from else ""
    if envelope_domain:
        candidates.append((f"envelope sender {envelope_domain}", envelope_domain))
    for label, domain in candidates:
        if domain_matches(domain, sender_domains):
            return SenderCheck(POLICY_DOMAIN, True, f"{label} is a sender domain")
    seen = ", ".join(label for label, _ in candidates) or "no sender address"
    return SenderCheck(
        POLICY_DOMAIN,
        False,
        f"{seen}: not one of the shop's sender domains "
        f"({', '.join(sender_domains) or 'none'})",
    )

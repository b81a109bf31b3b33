"""Carrier notification emails that reach a shop's BCC address.

Some shops forward the carriers' own emails (out for delivery, delivered,
failed attempt, ready for pickup). They come from the carrier's domain, not
the shop's, so the shop's sender check fails. An email whose ``From:``
domain is one of a carrier's sender domains is verified for status only: it
may move a shipment the shop already has, matched by tracking number, but
it never creates an order or a shipment and never triggers ``shipped`` for
something new. The inbound message records ``sender_check`` ``carrier``.
"""

from __future__ import annotations

from extractors.carriers import carrier_for_domain, carriers
from extractors.message import Address
from mailhandler.sender import (
    SenderCheck,
    TxtResolver,
    check_sender_dkim,
    domain_matches,
)

POLICY_CARRIER = "carrier"


def carrier_of_domain(domain: str) -> str | None:
    """Return the carrier that sends from ``domain`` (or a parent), or None."""
    return carrier_for_domain(domain)


def check_carrier_sender(
    from_: list[Address],
    shop_domains: list[str],
    raw: bytes | None = None,
    resolver: TxtResolver | None = None,
) -> SenderCheck | None:
    """Verify a message for status only when its From: is a carrier's.

    Only ``From:`` counts: a forwarded carrier email keeps the carrier's
    ``From:`` while its envelope sender may be the shop's forwarding
    mailbox, which must not turn it into a shop email. A ``From:`` on the
    shop's own list is the shop's, whatever carrier owns the domain. With
    ``raw`` and ``resolver`` (the shop's dkim policy), the email also needs
    a valid DKIM signature by one of that carrier's sender domains.
    """
    if any(domain_matches(address.domain, shop_domains) for address in from_):
        return None
    for address in from_:
        carrier = carrier_of_domain(address.domain)
        if carrier is None:
            continue
        if raw is None or resolver is None:
            return SenderCheck(
                POLICY_CARRIER,
                True,
                f"From: {address.domain} is a sender domain of {carrier}; "
                "status updates only",
            )
        signed = check_sender_dkim(
            raw, list(carriers()[carrier].sender_domains), resolver
        )
        return SenderCheck(
            POLICY_CARRIER,
            signed.verified,
            f"From: {address.domain} is {carrier}'s; {signed.detail}",
        )
    return None

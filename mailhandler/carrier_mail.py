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

from extractors.message import Address
from mailhandler.sender import SenderCheck, domain_matches

POLICY_CARRIER = "carrier"

# The domains carriers send their notification emails from; subdomains
# count. TODO(take the sender domains from the extractors' carrier data)
CARRIER_SENDER_DOMAINS: dict[str, tuple[str, ...]] = {
    "ups": ("ups.com",),
    "usps": ("usps.com",),
    "fedex": ("fedex.com",),
    "dhl_express": ("dhl.com",),
    "dhl_paket": ("dhl.de", "deutschepost.de"),
    "dpd": ("dpd.de", "dpd.co.uk", "dpd.com", "dpd.fr"),
    "gls": ("gls-group.eu", "gls-group.com", "gls-pakete.de"),
    "hermes": ("myhermes.de", "hermesworld.com"),
    "evri": ("evri.com", "myhermes.co.uk"),
    "royal_mail": ("royalmail.com",),
    "parcelforce": ("parcelforce.com", "parcelforce.co.uk"),
    "postnl": ("postnl.nl", "postnl.com"),
    "bpost": ("bpost.be",),
    "colissimo": ("colissimo.fr", "laposte.fr"),
    "chronopost": ("chronopost.fr",),
    "correos": ("correos.es",),
    "poste_italiane": ("poste.it", "posteitaliane.it"),
    "sda": ("sda.it",),
    "brt": ("brt.it",),
    "inpost": ("inpost.pl", "inpost.co.uk", "inpost.it"),
    "poczta_polska": ("poczta-polska.pl",),
    "postnord": ("postnord.se", "postnord.dk", "postnord.com"),
    "swiss_post": ("post.ch",),
    "austrian_post": ("post.at",),
    "ctt": ("ctt.pt",),
    "ceska_posta": ("cpost.cz",),
    "canada_post": ("canadapost.ca", "canadapost-postescanada.ca"),
    "australia_post": ("auspost.com.au",),
    "ontrac": ("ontrac.com",),
    "lasership": ("lasership.com",),
    "purolator": ("purolator.com",),
}


def carrier_of_domain(domain: str) -> str | None:
    """Return the carrier that sends from ``domain`` (or a parent), or None."""
    for carrier, domains in CARRIER_SENDER_DOMAINS.items():
        if domain_matches(domain, list(domains)):
            return carrier
    return None


def check_carrier_sender(
    from_: list[Address], shop_domains: list[str]
) -> SenderCheck | None:
    """Verify a message for status only when its From: is a carrier's.

    Only ``From:`` counts: a forwarded carrier email keeps the carrier's
    ``From:`` while its envelope sender may be the shop's forwarding
    mailbox, which must not turn it into a shop email. A ``From:`` on the
    shop's own list is the shop's, whatever carrier owns the domain.
    """
    if any(domain_matches(address.domain, shop_domains) for address in from_):
        return None
    for address in from_:
        carrier = carrier_of_domain(address.domain)
        if carrier is not None:
            return SenderCheck(
                POLICY_CARRIER,
                True,
                f"From: {address.domain} is a sender domain of {carrier}; "
                "status updates only",
            )
    return None

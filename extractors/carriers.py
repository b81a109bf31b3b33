"""Carrier slugs and their display names."""

from __future__ import annotations

# TODO(carrier definitions file): names only until the data file lands.
_NAMES = {
    "ups": "UPS",
    "usps": "USPS",
    "fedex": "FedEx",
    "dhl_express": "DHL Express",
    "dhl_paket": "DHL Paket",
    "dhl_ecommerce": "DHL eCommerce",
    "dpd": "DPD",
    "gls": "GLS",
    "hermes": "Hermes",
    "evri": "Evri",
    "royal_mail": "Royal Mail",
    "parcelforce": "Parcelforce",
    "postnl": "PostNL",
    "bpost": "bpost",
    "colissimo": "Colissimo",
    "chronopost": "Chronopost",
    "correos": "Correos",
    "poste_italiane": "Poste Italiane",
    "sda": "SDA",
    "brt": "BRT",
    "inpost": "InPost",
    "poczta_polska": "Poczta Polska",
    "postnord": "PostNord",
    "swiss_post": "Swiss Post",
    "austrian_post": "Austrian Post",
    "ctt": "CTT",
    "ceska_posta": "Česká pošta",
    "canada_post": "Canada Post",
    "australia_post": "Australia Post",
    "amazon_logistics": "Amazon Logistics",
    "ontrac": "OnTrac",
    "lasership": "LaserShip",
    "purolator": "Purolator",
}


def carrier_name(slug: str | None) -> str | None:
    """Return the display name of carrier ``slug``, or None when unknown."""
    if not slug or slug == "other":
        return None
    return _NAMES.get(slug, slug)

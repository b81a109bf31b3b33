"""Sender verification: does a message come from the shop it was sent to?

A BCC address is a write capability, so a message triggers customer email
only when its sender is verified against the shop's sender domains. The
shop's policy chooses how. ``dkim`` needs a valid DKIM signature by a sender
domain. ``domain``, for shops that cannot sign, needs the From: or envelope
sender's domain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

import dkim
import dkim.util

from extractors.message import Address, header_addresses

log = logging.getLogger("bcctrack.pipeline")

POLICY_DOMAIN = "domain"
POLICY_DKIM = "dkim"
# dkimpy's DNS hook: the TXT record of a name, or None.
TxtResolver = Callable[..., bytes | None]
_DKIM_DNS_TIMEOUT = 5
# Signatures by the shop's own domains checked per message; each costs a key
# lookup of up to the DNS timeout.
_MAX_CHECKED_SIGNATURES = 3
# dkimpy logs every failed check at ERROR; the check's detail reports it instead.
_DKIM_LOG = logging.getLogger("bcctrack.pipeline.dkim")
_DKIM_LOG.setLevel(logging.CRITICAL)


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
    from_domains = [address.domain for address in from_ if address.domain]
    # Every From: address must be the shop's: a second, foreign author in the
    # same header would otherwise ride on the shop's name.
    if from_domains and all(domain_matches(d, sender_domains) for d in from_domains):
        shown = ", ".join(sorted(set(from_domains)))
        return SenderCheck(POLICY_DOMAIN, True, f"From: {shown} is a sender domain")
    envelope_domain = _domain_of(mail_from) if mail_from else ""
    if envelope_domain and domain_matches(envelope_domain, sender_domains):
        return SenderCheck(
            POLICY_DOMAIN, True, f"envelope sender {envelope_domain} is a sender domain"
        )
    seen = [f"From: {domain}" for domain in from_domains]
    if envelope_domain:
        seen.append(f"envelope sender {envelope_domain}")
    return SenderCheck(
        POLICY_DOMAIN,
        False,
        f"{', '.join(seen) or 'no sender address'}: not one of the shop's sender "
        f"domains ({', '.join(sender_domains) or 'none'})",
    )


def default_resolver(keys_file: Path | None = None) -> TxtResolver:
    """Return the DKIM key lookup: ``keys_file`` first, then DNS (dnspython).

    ``keys_file`` contains lines ``<selector>._domainkey.<domain> <TXT record>``
    (``#`` starts a comment), so that an operator can check signatures
    without DNS, for example with a test key.
    """
    from dkim.dnsplug import get_txt

    static = _read_keys(keys_file) if keys_file is not None else {}

    def resolve(name: bytes, timeout: float = _DKIM_DNS_TIMEOUT) -> bytes | None:
        found = static.get(name.rstrip(b".").lower())
        if found is not None:
            return found
        record: bytes | None = get_txt(name, timeout=timeout)
        return record

    return resolve


def _read_keys(path: Path) -> dict[bytes, bytes]:
    keys = {}
    for raw_line in path.read_text(encoding="utf-8").splitlines():
        line = raw_line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, record = line.partition(" ")
        keys[name.rstrip(".").lower().encode()] = record.strip().strip('"').encode()
    return keys


def check_sender_dkim(
    raw: bytes, sender_domains: list[str], resolver: TxtResolver
) -> SenderCheck:
    """Verify by DKIM: some valid signature's d= is a sender domain (or below).

    Each signature is tried in order. The detail names why each one failed,
    so that an admin can tell a foreign signer from a body changed in transit.
    """
    verifier = dkim.DKIM(raw, logger=_DKIM_LOG, minkey=1024, timeout=_DKIM_DNS_TIMEOUT)
    headers = [v for name, v in verifier.headers if name.lower() == b"dkim-signature"]
    if not headers:
        return SenderCheck(POLICY_DKIM, False, "no DKIM signature")
    failures = []
    checked = 0
    for index, header in enumerate(headers):
        # A signature by a domain that is not the shop's cannot verify the
        # shop, so its key is not looked up: a message with hundreds of
        # foreign signatures costs no DNS queries.
        signer = _signer(header)
        if not domain_matches(signer, sender_domains):
            failures.append(
                f"signature by {signer or 'no domain'}: not a sender domain"
            )
            continue
        if checked >= _MAX_CHECKED_SIGNATURES:
            failures.append(f"signature by {signer}: not checked, too many signatures")
            continue
        checked += 1
        verifier.domain = None
        try:
            valid = verifier.verify(idx=index, dnsfunc=resolver)
        except dkim.DKIMException as error:
            failures.append(f"signature by {signer}: {error}")
            continue
        if valid:
            return SenderCheck(POLICY_DKIM, True, f"valid DKIM signature by {signer}")
        failures.append(
            f"signature by {signer} does not verify (the key is missing, does not "
            "match, or the message changed after signing)"
        )
    return SenderCheck(POLICY_DKIM, False, "; ".join(_unique(failures)))


def _signer(header: bytes) -> str:
    try:
        tags = dkim.util.parse_tag_value(header)
    except dkim.util.InvalidTagValueList:
        return ""
    return _text(tags.get(b"d")).strip().lower().rstrip(".")


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _text(value: bytes | None) -> str:
    return (value or b"").decode("ascii", "replace")


def header_senders(raw: bytes) -> list[Address]:
    """Return the From: addresses of ``raw``, reading only its header block."""
    end = min(
        (i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0),
        default=len(raw),
    )
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw[: min(end, 1 << 20)])
    return header_addresses(
        " ".join(str(value) for value in headers.get_all("From", []))
    )


def check_sender(
    policy: str,
    raw: bytes,
    sender_domains: list[str],
    from_: list[Address],
    mail_from: str,
    resolver: TxtResolver,
) -> SenderCheck:
    """Apply the shop's ``policy`` to one message."""
    if policy == POLICY_DKIM:
        try:
            return check_sender_dkim(raw, sender_domains, resolver)
        except Exception as error:
            # dkimpy raises more than DKIMException on hostile input; a
            # message whose signature cannot be checked is not verified.
            log.warning("DKIM check failed: %s: %s", type(error).__name__, error)
            return SenderCheck(POLICY_DKIM, False, f"DKIM check failed: {error}")
    return check_sender_domain(sender_domains, from_, mail_from)

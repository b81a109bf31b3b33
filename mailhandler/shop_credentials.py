"""A shop's own carrier credentials, for carriers that show a shop only its parcels."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, delete, select
from sqlmodel import col

from mailhandler import carrier_accounts
from mailhandler.store import transaction
from mailhandler.store.models import CarrierCredential, Shop, utcnow

# The adapters a shop can hold credentials for, with the fields each needs.
ADAPTER_FIELDS: dict[str, tuple[str, ...]] = {
    "dhl": ("api_key",),
    "ups": ("client_id", "client_secret"),
    "fedex": ("client_id", "client_secret"),
    "usps": ("client_id", "client_secret"),
    "seventeentrack": ("api_key",),
}


class CredentialError(Exception):
    """Credentials cannot be stored; the message names the invalid value."""


@dataclass(frozen=True)
class StoredCredential:
    """A shop's credential as listings show it: secrets reduced to a hint."""

    adapter: str
    client_id: str
    api_key_hint: str
    client_secret_hint: str


def _hint(secret: str) -> str:
    return f"...{secret[-4:]}" if len(secret) >= 12 else ("set" if secret else "")


def set_credentials(
    engine: Engine,
    shop: Shop,
    adapter: str,
    api_key: str = "",
    client_id: str = "",
    client_secret: str = "",
) -> carrier_accounts.Resumed:
    """Store (or replace) a shop's credentials for ``adapter``.

    Storing credentials resumes them like ``bcctrack carriers resume``: a
    pause that the carrier's rejection of the old ones started ends, and the
    shop's shipments that wait for a credential are due at once.
    """
    fields = ADAPTER_FIELDS.get(adapter)
    if fields is None:
        raise CredentialError(
            f"invalid adapter {adapter!r}: use one of {', '.join(ADAPTER_FIELDS)}"
        )
    given = {"api_key": api_key, "client_id": client_id, "client_secret": client_secret}
    missing = [name for name in fields if not given[name].strip()]
    if missing:
        options = ", ".join("--" + name.replace("_", "-") for name in missing)
        raise CredentialError(f"missing {options} for adapter {adapter!r}")
    assert shop.id is not None
    with transaction(engine) as session:
        stored = session.scalars(
            select(CarrierCredential).where(
                col(CarrierCredential.shop_id) == shop.id,
                col(CarrierCredential.adapter) == adapter,
            )
        ).first() or CarrierCredential(shop_id=shop.id, adapter=adapter)
        stored.api_key = api_key.strip()
        stored.client_id = client_id.strip()
        stored.client_secret = client_secret.strip()
        stored.updated_at = utcnow()
        session.add(stored)
    return carrier_accounts.resume(engine, adapter, shop.slug, shop.id)


def remove_credentials(engine: Engine, shop: Shop, adapter: str) -> bool:
    """Delete a shop's credentials for ``adapter``; False when there were none.

    The shop's shipments then use the configured credentials; those that
    waited for a credential are due at once.
    """
    assert shop.id is not None
    with transaction(engine) as session:
        result = session.execute(
            delete(CarrierCredential).where(
                col(CarrierCredential.shop_id) == shop.id,
                col(CarrierCredential.adapter) == adapter,
            )
        )
    removed = bool(result.rowcount)  # type: ignore[attr-defined]
    if removed:
        carrier_accounts.forget(engine, adapter, shop.slug, shop.id)
    return removed


def list_credentials(engine: Engine, shop: Shop) -> list[StoredCredential]:
    """Return a shop's credentials without their secrets."""
    with transaction(engine) as session:
        rows = list(
            session.scalars(
                select(CarrierCredential)
                .where(col(CarrierCredential.shop_id) == shop.id)
                .order_by(col(CarrierCredential.adapter))
            )
        )
    return [
        StoredCredential(
            adapter=row.adapter,
            client_id=row.client_id,
            api_key_hint=_hint(row.api_key),
            client_secret_hint=_hint(row.client_secret),
        )
        for row in rows
    ]

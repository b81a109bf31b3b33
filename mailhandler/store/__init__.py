"""The store: tables, engine, migrations and queue claims."""

from mailhandler.store.engine import StoreError, open_store, transaction

__all__ = ["StoreError", "open_store", "transaction"]

"""Alembic environment: migrations run on the connection bcctrack passes in."""

from alembic import context
from sqlmodel import SQLModel

import mailhandler.store.models  # noqa: F401  (registers the tables)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through mailhandler.store.engine.migrate")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()

"""Unique ids on SQLite, message variants, several tokens, shipments per order

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 18:10:00

- SQLite tables get AUTOINCREMENT, so that ids of deleted rows (a purged
  shop) are never handed out again.
- inbound_message.sha256 tells a retry from a different message with the
  same Message-ID.
- shop.retired_tokens replaces the single previous token, so that a second
  rotation keeps the first one's grace period.
- A tracking number can belong to a shipment of each of several orders, and
  a shipment can be withdrawn.
"""

import hashlib
from collections.abc import Sequence
from datetime import UTC

import sqlalchemy as sa
import sqlmodel
from alembic import op

import mailhandler.store.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "shop",
    "inbound_message",
    "shop_order",
    "shipment",
    "tracking_event",
    "notification",
    "drift_alarm",
    "shipment_poll",
    "carrier_account",
    "carrier_credential",
    "opt_out",
    "status_file",
)


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _move_tokens() -> None:
    bind = op.get_bind()
    shop = sa.table(
        "shop",
        sa.column("id", sa.Integer),
        sa.column("previous_token", sa.String),
        sa.column("previous_token_expires_at", mailhandler.store.models.UTCDateTime()),
        sa.column("retired_tokens", sa.JSON),
    )
    rows = bind.execute(
        sa.select(shop.c.id, shop.c.previous_token, shop.c.previous_token_expires_at)
    ).all()
    for shop_id, token, expires in rows:
        retired = []
        if token and expires is not None:
            retired = [{"token": token, "expires_at": expires.astimezone(UTC).isoformat()}]
        bind.execute(
            shop.update().where(shop.c.id == shop_id).values(retired_tokens=retired)
        )


def _fill_hashes() -> None:
    bind = op.get_bind()
    message = sa.table(
        "inbound_message",
        sa.column("id", sa.Integer),
        sa.column("raw", sa.LargeBinary),
        sa.column("sha256", sa.String),
    )
    ids = [row[0] for row in bind.execute(sa.select(message.c.id)).all()]
    for message_id in ids:
        raw = bind.execute(
            sa.select(message.c.raw).where(message.c.id == message_id)
        ).scalar_one()
        bind.execute(
            message.update()
            .where(message.c.id == message_id)
            .values(sha256=hashlib.sha256(raw).hexdigest())
        )


def upgrade() -> None:
    with op.batch_alter_table("shop", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retired_tokens", sa.JSON(), nullable=True))
    _move_tokens()
    with op.batch_alter_table("shop", schema=None) as batch_op:
        batch_op.drop_column("previous_token_expires_at")
        batch_op.drop_column("previous_token")

    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True
            )
        )
    _fill_hashes()

    with op.batch_alter_table("shipment", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "withdrawn_at", mailhandler.store.models.UTCDateTime(), nullable=True
            )
        )
        batch_op.drop_constraint("uq_shipment_shop_number", type_="unique")
        batch_op.create_unique_constraint(
            "uq_shipment_order_number", ["shop_id", "tracking_number", "order_id"]
        )

    if _sqlite():
        # Each rebuild drops the old table; mailhandler.store.engine.migrate
        # turns SQLite's foreign keys off around migrations for that, and
        # checks them all afterwards.
        for table in TABLES:
            with op.batch_alter_table(
                table,
                recreate="always",
                table_kwargs={"sqlite_autoincrement": True},
            ):
                pass


def downgrade() -> None:
    with op.batch_alter_table("shipment", schema=None) as batch_op:
        batch_op.drop_constraint("uq_shipment_order_number", type_="unique")
        batch_op.create_unique_constraint(
            "uq_shipment_shop_number", ["shop_id", "tracking_number"]
        )
        batch_op.drop_column("withdrawn_at")
    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.drop_column("sha256")
    with op.batch_alter_table("shop", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "previous_token",
                sqlmodel.sql.sqltypes.AutoString(length=64),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column(
                "previous_token_expires_at",
                mailhandler.store.models.UTCDateTime(),
                nullable=True,
            )
        )
        batch_op.drop_column("retired_tokens")

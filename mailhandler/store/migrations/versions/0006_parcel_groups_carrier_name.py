"""Updates of several parcels as one email, and the printed carrier name

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 21:00:00

- notification.group_id joins the updates of one order and update type
  that became due together, so that the customer gets one email.
- shipment.carrier_name keeps the name of a carrier that bcctrack does not
  track ("Mondial Relay") for the customer updates.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.add_column(sa.Column("group_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_notification_group", ["group_id"], unique=False)
    with op.batch_alter_table("shipment", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "carrier_name",
                sqlmodel.sql.sqltypes.AutoString(length=200),
                nullable=True,
            )
        )


def downgrade() -> None:
    # SQLite drops a column by rebuilding the table, which must keep the
    # AUTOINCREMENT of migration 0004.
    rebuilt = {"sqlite_autoincrement": True}
    with op.batch_alter_table(
        "shipment", schema=None, table_kwargs=rebuilt
    ) as batch_op:
        batch_op.drop_column("carrier_name")
    with op.batch_alter_table(
        "notification", schema=None, table_kwargs=rebuilt
    ) as batch_op:
        batch_op.drop_index("ix_notification_group")
        batch_op.drop_column("group_id")

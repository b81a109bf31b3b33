"""The fingerprint of a rejected carrier key in a column of its own

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 18:40:00
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# How the fingerprint was kept before: at the end of the pause reason.
_IN_REASON = re.compile(r" \[key fingerprint ([0-9a-f]{16})\]\Z")


def upgrade() -> None:
    with op.batch_alter_table("carrier_account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "paused_key_fingerprint",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=True,
            )
        )
    account = sa.table(
        "carrier_account",
        sa.column("id", sa.Integer),
        sa.column("pause_reason", sa.String),
        sa.column("paused_key_fingerprint", sa.String),
    )
    bind = op.get_bind()
    for account_id, reason in bind.execute(
        sa.select(account.c.id, account.c.pause_reason)
    ).all():
        match = _IN_REASON.search(reason or "")
        if match is None:
            continue
        bind.execute(
            account.update()
            .where(account.c.id == account_id)
            .values(
                pause_reason=_IN_REASON.sub("", reason),
                paused_key_fingerprint=match.group(1),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("carrier_account", schema=None) as batch_op:
        batch_op.drop_column("paused_key_fingerprint")

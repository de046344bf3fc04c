"""outbox claim owner: the heartbeat id of the process holding an in-flight operation

Revision ID: c7d3e1a90b42
Revises: d2ae15afdaa8
Create Date: 2026-12-06 15:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c7d3e1a90b42"
down_revision = 'd2ae15afdaa8'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN, not batch_alter_table: on SQLite a batch rebuild of
    # outbox_operations would drop the tally triggers.
    op.add_column("outbox_operations", sa.Column("owner", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # SQLite (3.35+) drops a column in place; the triggers do not name it.
    op.drop_column("outbox_operations", "owner")

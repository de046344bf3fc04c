"""campaign group code (group_invite)

Revision ID: d2ae15afdaa8
Revises: fba930ec07ce
Create Date: 2026-12-06 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = 'd2ae15afdaa8'
down_revision = 'fba930ec07ce'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain ADD COLUMN: campaigns has no triggers to lose on SQLite
    op.add_column('campaigns', sa.Column('group_code', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_column('group_code')

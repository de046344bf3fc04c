"""campaign group code (group_invite) and group 群发 deliveries (group_broadcast)

Revision ID: d2ae15afdaa8
Revises: c1e7a5d20b43
Create Date: 2026-12-06 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.db.types


revision = 'd2ae15afdaa8'
down_revision = 'c1e7a5d20b43'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain ADD COLUMN: campaigns has no triggers to lose on SQLite
    op.add_column('campaigns', sa.Column('group_code', sa.String(length=64), nullable=True))
    op.create_table(
        'campaign_group_deliveries',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('campaign_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('group_chat_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('arm', sa.String(length=16), nullable=False),
        sa.Column('owner_userid', sa.String(length=64), nullable=False),
        sa.Column('task_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('send_status', sa.Integer(), nullable=True),
        sa.Column('created_at', bot.db.types.UTCDateTime(), nullable=False),
        sa.Column('sent_at', bot.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['group_chat_id'], ['group_chats.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['run_id'], ['campaign_runs.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['task_id'], ['campaign_tasks.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('run_id', 'group_chat_id'),
    )
    op.create_index(
        'ix_campaign_group_deliveries_campaign_group',
        'campaign_group_deliveries',
        ['campaign_id', 'group_chat_id'],
    )
    op.create_index(
        'ix_campaign_group_deliveries_task', 'campaign_group_deliveries', ['task_id']
    )


def downgrade() -> None:
    op.drop_index('ix_campaign_group_deliveries_task', table_name='campaign_group_deliveries')
    op.drop_index(
        'ix_campaign_group_deliveries_campaign_group', table_name='campaign_group_deliveries'
    )
    op.drop_table('campaign_group_deliveries')
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_column('group_code')

"""tier_assignments keyed by (customer_id, dimension), its unused id dropped

Revision ID: c1e7a5d20b43
Revises: fba930ec07ce
Create Date: 2026-12-06 16:00:00.000000

The pair was already unique; as the primary key it puts the customer first, as a table
distributed by customer id needs (docs/citus.md, bot/db/citus.py). Nothing read the id.
The outbox tally triggers are on outbox_operations: this table has none to lose.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = 'c1e7a5d20b43'
down_revision = 'fba930ec07ce'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tier_assignments', schema=None) as batch_op:
        batch_op.drop_constraint('uq_tier_assignments_customer_id_dimension', type_='unique')
        batch_op.drop_constraint('pk_tier_assignments', type_='primary')
        batch_op.drop_column('id')
        batch_op.create_primary_key('pk_tier_assignments', ['customer_id', 'dimension'])


def downgrade() -> None:
    # The old surrogate key comes back numbered afresh (nothing referred to it).
    with op.batch_alter_table('tier_assignments', schema=None) as batch_op:
        batch_op.drop_constraint('pk_tier_assignments', type_='primary')
        batch_op.create_unique_constraint(
            'uq_tier_assignments_customer_id_dimension', ['customer_id', 'dimension']
        )
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE tier_assignments ADD COLUMN id BIGSERIAL')
        op.create_primary_key('pk_tier_assignments', 'tier_assignments', ['id'])
    else:
        with op.batch_alter_table('tier_assignments', schema=None) as batch_op:
            batch_op.add_column(sa.Column('id', sa.Integer(), nullable=True))
        op.execute('UPDATE tier_assignments SET id = rowid')
        with op.batch_alter_table('tier_assignments', schema=None) as batch_op:
            batch_op.alter_column('id', nullable=False)
            batch_op.create_primary_key('pk_tier_assignments', ['id'])

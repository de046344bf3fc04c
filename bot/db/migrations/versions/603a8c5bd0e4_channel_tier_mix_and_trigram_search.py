"""channel tier mix; trigram search indexes on PostgreSQL when pg_trgm is available

Revision ID: 603a8c5bd0e4
Revises: 37c38d5ea6c5
Create Date: 2026-12-06 07:25:04.694426
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.db.types

revision = '603a8c5bd0e4'
down_revision = '37c38d5ea6c5'
branch_labels = None
depends_on = None

# The 客户 search's substring indexes (bot.db.search_index.TRIGRAM_INDEXES): PostgreSQL
# only, and only where the pg_trgm extension is installed or may be created here.
TRIGRAM = (
    ("ix_customers_name_trgm", "customers", "name"),
    ("ix_follow_relations_remark_trgm", "follow_relations", "remark"),
)


def _trigram_schema(conn: sa.Connection) -> str | None:
    """Return the schema pg_trgm lives in, creating it when allowed; None when unavailable."""
    found = conn.execute(
        sa.text(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
            " WHERE e.extname = 'pg_trgm'"
        )
    ).scalar()
    if found is not None:
        return str(found)
    available = conn.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
    ).scalar()
    if available is None:
        return None
    # In public when there is one: an extension lives once per database, and one created
    # in a schema that is later dropped would take every index using it along.
    schema = conn.execute(
        sa.text(
            "SELECT coalesce((SELECT nspname FROM pg_namespace WHERE nspname = 'public'),"
            " current_schema())"
        )
    ).scalar()
    savepoint = conn.begin_nested()
    try:
        conn.execute(sa.text(f'CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA "{schema}"'))
    except sa.exc.DBAPIError:  # not allowed to: the search scans, as before
        savepoint.rollback()
        return None
    savepoint.commit()
    return str(schema)


def upgrade() -> None:
    op.create_table('channel_tier_mix',
    sa.Column('channel_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('dimension', sa.String(length=64), nullable=False),
    sa.Column('tier', sa.String(length=30), nullable=False),
    sa.Column('customers', sa.Integer(), nullable=False),
    sa.Column('computed_at', bot.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('channel_id', 'dimension', 'tier', name=op.f('pk_channel_tier_mix'))
    )
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    schema = _trigram_schema(conn)
    if schema is None:
        return
    for name, table, column in TRIGRAM:
        op.execute(
            f'CREATE INDEX IF NOT EXISTS {name} ON {table}'
            f' USING gin ({column} "{schema}".gin_trgm_ops)'
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, _, _ in TRIGRAM:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    op.drop_table('channel_tier_mix')

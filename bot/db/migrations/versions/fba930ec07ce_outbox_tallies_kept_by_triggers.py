"""outbox tallies: operations per status (and per id block), kept by triggers

Revision ID: fba930ec07ce
Revises: 3dad7a821743
Create Date: 2026-12-06 12:55:00.000000

Every statement that inserts, updates or deletes outbox operations adds its changes to
`outbox_tallies` in its own transaction (bot/tags/tallies.py says why triggers): on
PostgreSQL one statement-level trigger per event, reading the statement's transition
tables, so a bulk insert of a push pays one grouped pass and one upsert, and each
connection adds into its own shard row (backend pid modulo 16); on SQLite (one writer
at a time) row triggers into shard 0. The existing operations are counted once here,
inside the migration's transaction, which holds the table against writers meanwhile.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = 'fba930ec07ce'
down_revision = '3dad7a821743'
branch_labels = None
depends_on = None

BLOCK = 16384  # bot/tags/tallies.BLOCK
SHARDS = 16  # bot/tags/tallies.SHARDS

# (block, status, operations) changes of one statement, as `d`; added into this
# connection's shard, in key order (two statements of one shard lock rows alike).
_PG_ADD = f"""
    INSERT INTO outbox_tallies AS t (block, status, shard, operations)
    SELECT block, status, pg_backend_pid() % {SHARDS}, sum(n)
    FROM (SELECT block, status, n FROM d UNION ALL SELECT -1, status, n FROM d) AS x
    GROUP BY block, status
    HAVING sum(n) <> 0
    ORDER BY block, status
    ON CONFLICT (block, status, shard)
    DO UPDATE SET operations = t.operations + excluded.operations;
"""

_PG_FUNCTIONS = {
    'insert': f"""
        WITH d AS (
            SELECT id / {BLOCK} AS block, status, count(*) AS n FROM new_rows GROUP BY 1, 2
        ) {_PG_ADD}""",
    'update': f"""
        WITH d AS (
            SELECT block, status, sum(n) AS n FROM (
                SELECT id / {BLOCK} AS block, status, 1 AS n FROM new_rows
                UNION ALL
                SELECT id / {BLOCK}, status, -1 FROM old_rows
            ) AS c GROUP BY 1, 2
        ) {_PG_ADD}""",
    'delete': f"""
        WITH d AS (
            SELECT id / {BLOCK} AS block, status, -count(*) AS n FROM old_rows GROUP BY 1, 2
        ) {_PG_ADD}""",
}
_PG_REFERENCING = {
    'insert': 'NEW TABLE AS new_rows',
    'update': 'OLD TABLE AS old_rows NEW TABLE AS new_rows',
    'delete': 'OLD TABLE AS old_rows',
}


def _sqlite_add(row: str, sign: str) -> str:
    return (
        'INSERT INTO outbox_tallies (block, status, shard, operations) VALUES '
        f'(-1, {row}.status, 0, {sign}1), ({row}.id / {BLOCK}, {row}.status, 0, {sign}1) '
        'ON CONFLICT (block, status, shard) '
        'DO UPDATE SET operations = operations + excluded.operations;'
    )


_SQLITE_TRIGGERS = {
    'insert': ('AFTER INSERT', _sqlite_add('new', '')),
    'update': (
        'AFTER UPDATE OF status, id ON outbox_operations '
        'WHEN old.status IS NOT new.status OR old.id IS NOT new.id',
        _sqlite_add('old', '-') + ' ' + _sqlite_add('new', ''),
    ),
    'delete': ('AFTER DELETE', _sqlite_add('old', '-')),
}

_BACKFILL = f"""
    INSERT INTO outbox_tallies (block, status, shard, operations)
    SELECT -1, status, 0, count(*) FROM outbox_operations GROUP BY status
    UNION ALL
    SELECT id / {BLOCK}, status, 0, count(*) FROM outbox_operations GROUP BY id / {BLOCK}, status
"""


def upgrade() -> None:
    op.create_table('outbox_tallies',
    sa.Column('block', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('shard', sa.Integer(), nullable=False),
    sa.Column('operations', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('block', 'status', 'shard', name=op.f('pk_outbox_tallies'))
    )
    dialect = op.get_bind().dialect.name
    if dialect == 'postgresql':
        # Writers wait until the count below is committed with the triggers.
        op.execute('LOCK TABLE outbox_operations IN SHARE ROW EXCLUSIVE MODE')
        for event, body in _PG_FUNCTIONS.items():
            op.execute(
                f'CREATE FUNCTION outbox_tally_{event}() RETURNS trigger LANGUAGE plpgsql AS '
                f'$$ BEGIN {body} RETURN NULL; END $$'
            )
            op.execute(
                f'CREATE TRIGGER outbox_tally_{event} AFTER {event.upper()} ON outbox_operations '
                f'REFERENCING {_PG_REFERENCING[event]} '
                f'FOR EACH STATEMENT EXECUTE FUNCTION outbox_tally_{event}()'
            )
        op.execute(
            'CREATE FUNCTION outbox_tally_truncate() RETURNS trigger LANGUAGE plpgsql AS '
            '$$ BEGIN DELETE FROM outbox_tallies; RETURN NULL; END $$'
        )
        op.execute(
            'CREATE TRIGGER outbox_tally_truncate AFTER TRUNCATE ON outbox_operations '
            'FOR EACH STATEMENT EXECUTE FUNCTION outbox_tally_truncate()'
        )
    else:
        for event, (when, body) in _SQLITE_TRIGGERS.items():
            on = '' if ' ON ' in when else ' ON outbox_operations'
            op.execute(f'CREATE TRIGGER outbox_tally_{event} {when}{on} BEGIN {body} END')
    op.execute(_BACKFILL)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for event in ('insert', 'update', 'delete', 'truncate'):
        if dialect == 'postgresql':
            op.execute(f'DROP TRIGGER IF EXISTS outbox_tally_{event} ON outbox_operations')
            op.execute(f'DROP FUNCTION IF EXISTS outbox_tally_{event}()')
        elif event != 'truncate':
            op.execute(f'DROP TRIGGER IF EXISTS outbox_tally_{event}')
    op.drop_table('outbox_tallies')

"""Write a run's outcome: the run row, its transitions and the new assignments.

Changes stream out of DuckDB in chunks; each chunk is one short write transaction
(`Database.write()`) so a million-customer first run never holds SQLite's writer for
long. A run cut short leaves the chunks written so far: they are consistent (a
transition with its assignment), and the next run diffs against them and does the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import duckdb
from sqlalchemy import update
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.models import RetierRun
from bot.db.types import utcnow
from bot.tiering.evaluate import CHANGES

CHUNK = 20_000  # changes per write transaction


def start_run(db: Database, *, as_of: datetime, scope: str) -> int:
    """Insert the run's row and return its id."""
    with db.write() as session:
        run = RetierRun(as_of=as_of, scope=scope, dry_run=False)
        session.add(run)
        session.flush()
        return run.id


def finish_run(
    db: Database,
    run_id: int,
    *,
    customers: int,
    transitions: int,
    changed_customers: int,
    operations: int,
    also: Callable[[Session], object] | None = None,
) -> None:
    """Record the run's counts and its end, with `also`'s writes in the same transaction."""
    with db.write() as session:
        if also is not None:
            also(session)
        session.execute(
            update(RetierRun)
            .where(RetierRun.id == run_id)
            .values(
                finished_at=utcnow(),
                customers=customers,
                transitions=transitions,
                changed_customers=changed_customers,
                operations=operations,
            )
        )


def _sql(dialect: str) -> tuple[str, str, str]:
    """Return the driver-level transition insert, assignment upsert and delete."""
    p = "?" if dialect == "sqlite" else "%s"
    json = p if dialect == "sqlite" else f"CAST({p} AS JSON)"
    return (
        "INSERT INTO tier_transitions"
        " (customer_id, dimension, from_tier, to_tier, run_id, at, as_of, metrics)"
        f" VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {json})",
        "INSERT INTO tier_assignments (customer_id, dimension, tier, since)"
        f" VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (customer_id, dimension)"
        " DO UPDATE SET tier = excluded.tier, since = excluded.since",
        f"DELETE FROM tier_assignments WHERE customer_id = {p} AND dimension = {p}",
    )


def _moment(dialect: str, value: datetime) -> Any:
    """Encode an aware time as UTCDateTime stores it (SQLite: naive UTC text)."""
    if dialect != "sqlite":
        return value
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def apply_chunk(
    rows: Sequence[tuple[Any, ...]], *, session: Session, run_id: int, as_of: datetime
) -> None:
    """Record one chunk of changes: transitions, upserted or deleted assignments.

    SQLite: the driver's executemany with values encoded as the column types store them
    (SQLAlchemy's per-value bind processing cost several times the inserts themselves).
    PostgreSQL: COPY, which is several times faster than even a pipelined executemany.
    """
    conn = session.connection()
    dialect = conn.dialect.name
    if dialect == "postgresql":
        _apply_chunk_copy(conn, rows, run_id=run_id, as_of=as_of)
        return
    transitions, upsert, remove = _sql(dialect)
    now, since = _moment(dialect, utcnow()), _moment(dialect, as_of)
    conn.exec_driver_sql(
        transitions,
        [(cid, dim, old, new, run_id, now, since, metrics) for cid, dim, old, new, metrics in rows],
    )
    entered = [(cid, dim, new, since) for cid, dim, _, new, _ in rows if new is not None]
    if entered:
        conn.exec_driver_sql(upsert, entered)
    left = [(cid, dim) for cid, dim, _, new, _ in rows if new is None]
    if left:
        conn.exec_driver_sql(remove, left)


# Staged assignments of one chunk; a temp table lives with the connection, its rows only
# with the transaction, so a pooled connection never carries one chunk's rows into another.
_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS tier_assignment_stage"
    " (customer_id BIGINT, dimension TEXT, tier TEXT) ON COMMIT DELETE ROWS"
)


def _apply_chunk_copy(
    conn: Any, rows: Sequence[tuple[Any, ...]], *, run_id: int, as_of: datetime
) -> None:
    """PostgreSQL: COPY the transitions, and the assignments through a staging table."""
    now = utcnow()
    raw = conn.connection.driver_connection  # psycopg 3, inside the session's transaction
    with raw.cursor() as cur:
        with cur.copy(
            "COPY tier_transitions"
            " (customer_id, dimension, from_tier, to_tier, run_id, at, as_of, metrics)"
            " FROM STDIN"
        ) as copy:
            for cid, dim, old, new, metrics in rows:
                copy.write_row((cid, dim, old, new, run_id, now, as_of, metrics))
        cur.execute(_STAGE)
        with cur.copy(
            "COPY tier_assignment_stage (customer_id, dimension, tier) FROM STDIN"
        ) as copy:
            for cid, dim, _, new, _ in rows:
                copy.write_row((cid, dim, new))
        cur.execute(
            "INSERT INTO tier_assignments (customer_id, dimension, tier, since)"
            " SELECT customer_id, dimension, tier, %s FROM tier_assignment_stage"
            " WHERE tier IS NOT NULL"
            " ON CONFLICT (customer_id, dimension)"
            " DO UPDATE SET tier = excluded.tier, since = excluded.since",
            (as_of,),
        )
        cur.execute(
            "DELETE FROM tier_assignments AS a USING tier_assignment_stage AS s"
            " WHERE s.tier IS NULL AND a.customer_id = s.customer_id"
            " AND a.dimension = s.dimension"
        )
        cur.execute("TRUNCATE tier_assignment_stage")


def record_changes(
    db: Database,
    con: duckdb.DuckDBPyConnection,
    *,
    run_id: int,
    as_of: datetime,
    chunk: int = CHUNK,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Write every row of `changes` in chunks; return how many transitions were recorded."""
    con.execute(
        f"SELECT customer_id, dimension, from_tier, to_tier, metrics FROM {CHANGES}"
        " ORDER BY customer_id, position"
    )
    written = 0
    while rows := con.fetchmany(chunk):
        with db.write() as session:
            apply_chunk(rows, session=session, run_id=run_id, as_of=as_of)
        written += len(rows)
        if on_progress is not None:
            on_progress(len(rows))
    return written

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
) -> None:
    """Record the run's counts and its end."""
    with db.write() as session:
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
    session: Session, rows: Sequence[tuple[Any, ...]], *, run_id: int, as_of: datetime
) -> None:
    """Record one chunk of changes: transitions, upserted or deleted assignments.

    Through the driver's executemany with values encoded as the column types store them:
    SQLAlchemy's per-value bind processing cost several times the inserts themselves.
    """
    conn = session.connection()
    dialect = conn.dialect.name
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
            apply_chunk(session, rows, run_id=run_id, as_of=as_of)
        written += len(rows)
        if on_progress is not None:
            on_progress(len(rows))
    return written

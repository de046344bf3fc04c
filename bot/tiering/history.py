"""Write a run's outcome: the run row, its transitions and the new assignments.

Changes stream out of DuckDB in chunks; each chunk is one short write transaction
(`Database.write()`) so a million-customer first run never holds SQLite's writer for
long. A run cut short leaves the chunks written so far: they are consistent (a
transition with its assignment), and the next run diffs against them and does the rest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import duckdb
from sqlalchemy import Table, bindparam, delete, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.models import RetierRun, TierAssignment, TierTransition
from bot.db.types import utcnow
from bot.tiering.evaluate import CHANGES

CHUNK = 20_000  # changes per write transaction

ASSIGNMENTS: Table = TierAssignment.__table__  # type: ignore[assignment]
TRANSITIONS: Table = TierTransition.__table__  # type: ignore[assignment]


def _insert(session: Session, table: Table) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


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


def apply_chunk(
    session: Session, rows: Sequence[tuple[Any, ...]], *, run_id: int, as_of: datetime
) -> None:
    """Record one chunk of changes: transitions, upserted or deleted assignments."""
    now = utcnow()
    session.execute(
        insert(TRANSITIONS),
        [
            {
                "customer_id": cid,
                "dimension": dim,
                "from_tier": old,
                "to_tier": new,
                "run_id": run_id,
                "at": now,
                "as_of": as_of,
                "metrics": json.loads(metrics) if metrics else None,
            }
            for cid, dim, old, new, metrics in rows
        ],
    )
    entered = [
        {"customer_id": c, "dimension": d, "tier": n, "since": as_of} for c, d, _, n, _ in rows if n
    ]
    if entered:
        stmt = _insert(session, ASSIGNMENTS)
        stmt = stmt.on_conflict_do_update(
            index_elements=[ASSIGNMENTS.c.customer_id, ASSIGNMENTS.c.dimension],
            set_={"tier": stmt.excluded.tier, "since": stmt.excluded.since},
        )
        session.execute(stmt, entered)
    left = [{"c": c, "d": d} for c, d, _, n, _ in rows if n is None]
    if left:
        session.execute(
            delete(ASSIGNMENTS).where(
                ASSIGNMENTS.c.customer_id == bindparam("c"),
                ASSIGNMENTS.c.dimension == bindparam("d"),
            ),
            left,
        )


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

"""The rank population a full run leaves in the database, for touched runs in any process.

R and M scores and spend_percentile_365d rank a customer among all the window's buyers.
Each full (not dry) run stores those buyers — customer, spend_365d in fen, days since the
last paid order, clv_365d (its predictive model is stored with the run's row) — in `tier_population`, and in `tier_population_state` the run, its as_of
local day and zone and the profile attributes it saw, in the transaction that finishes
the run. Days count back from the as_of local day, so the rows rank any as_of of that day
exactly as the engine's kept population does: an engine holding none for a touched run's
day and zone loads these rows (their size, not a pass over every order). A touched (not
dry) run of that day and zone replaces its customers' rows by their new values (a buyer
may stop being one) and adds the profile attributes it saw, in the transaction that
finishes it: an engine that loads the rows later ranks as one that kept its population.
Both writers lock the state row first, so a full and a touched run never interleave.
The day-population job (`bot.tiering.day_population`) stores the day's right after local
midnight the same way, with no run (`run_id` None) and its fitted model in the state row;
the nightly full run replaces it with its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.models import TierPopulation, TierPopulationState

STATE_ID = 1
CHUNK = 50_000  # rows fetched from DuckDB at a time
IDS_CHUNK = 500  # customer ids per DELETE ... IN (SQLite's bound-parameter limit)


@dataclass(frozen=True)
class Stored:
    """Which run the stored population is from, and for which local day and zone."""

    run_id: int | None  # None: the day-population job built it (`predictive` its model)
    as_of_day: date
    tz: str
    profile_names: list[str]
    predictive: str | None = None

    def serves(self, as_of_day: date, tz: str) -> bool:
        """Whether these rows rank a run of `as_of_day` in `tz`."""
        return (self.as_of_day, self.tz) == (as_of_day, tz)


def stored(db: Database) -> Stored | None:
    """Return the stored population's state (None before the first full run)."""
    with db.read() as session:
        row = session.get(TierPopulationState, STATE_ID)
        if row is None:
            return None
        return Stored(
            row.run_id, row.as_of_day, row.tz, json.loads(row.profile_names), row.predictive
        )


def parse_state(row: Sequence[Any] | None) -> Stored | None:
    """Return the state from a (run_id, as_of_day, tz, profile_names, predictive) DuckDB row."""
    if row is None:
        return None
    run_id, day, tz, names, predictive = row
    return Stored(
        None if run_id is None else int(run_id),
        date.fromisoformat(str(day)[:10]),
        str(tz),
        json.loads(names),
        None if predictive is None else str(predictive),
    )


def store(
    con: duckdb.DuckDBPyConnection,
    rows_sql: str,
    *,
    session: Session,
    run_id: int | None,
    as_of_day: date,
    tz: str,
    profile_names: Sequence[str],
    predictive: str | None = None,
) -> int:
    """Replace the stored population by `rows_sql`'s (cid, fen_365d, last_ago, clv); return its size.

    `run_id` None: the day-population job's, with its model's JSON in `predictive`.

    SQLite: executemany of plain ints; PostgreSQL: COPY (as bot.tiering.history writes).
    """
    _lock_state(session=session)
    conn = session.connection()
    conn.exec_driver_sql("DELETE FROM tier_population")
    cur = con.cursor()
    written = 0
    try:
        cur.execute(rows_sql)
        if conn.dialect.name == "postgresql":
            raw: Any = conn.connection.driver_connection  # psycopg 3, in the session's transaction
            with (
                raw.cursor() as pg,
                pg.copy(
                    "COPY tier_population (customer_id, spend_365d, days_since_last_order, clv_365d)"
                    " FROM STDIN"
                ) as copy,
            ):
                while rows := cur.fetchmany(CHUNK):
                    for row in rows:
                        copy.write_row(row)
                    written += len(rows)
        else:
            while rows := cur.fetchmany(CHUNK):
                conn.exec_driver_sql(
                    "INSERT INTO tier_population"
                    " (customer_id, spend_365d, days_since_last_order, clv_365d)"
                    " VALUES (?, ?, ?, ?)",
                    [(int(c), int(f), int(a), _float(v)) for c, f, a, v in rows],
                )
                written += len(rows)
    finally:
        cur.close()
    session.execute(delete(TierPopulationState))
    session.add(
        TierPopulationState(
            id=STATE_ID,
            run_id=run_id,
            as_of_day=as_of_day,
            tz=tz,
            profile_names=json.dumps(sorted(profile_names), ensure_ascii=False),
            predictive=predictive,
        )
    )
    session.flush()
    return written


def lock_state(*, session: Session) -> Stored | None:
    """Return the stored population's state, locked till the transaction ends."""
    row = _lock_state(session=session)
    if row is None:
        return None
    return Stored(row.run_id, row.as_of_day, row.tz, json.loads(row.profile_names), row.predictive)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _lock_state(*, session: Session) -> TierPopulationState | None:
    """Return the state row, locked till the transaction ends (PostgreSQL; SQLite: one writer)."""
    return session.scalars(
        select(TierPopulationState).where(TierPopulationState.id == STATE_ID).with_for_update()
    ).one_or_none()


def update_touched(
    customer_ids: Sequence[int],
    rows: Sequence[tuple[int, int, int, float | None]],
    *,
    session: Session,
    as_of_day: date,
    tz: str,
    profile_names: Sequence[str],
) -> bool:
    """Replace `customer_ids`' stored rows by `rows` (cid, fen_365d, last_ago, clv); say whether.

    Only when the stored state serves `as_of_day` in `tz`: another day's rows count days
    from another day. `profile_names` join the state's.
    """
    state = _lock_state(session=session)
    if state is None or (state.as_of_day, state.tz) != (as_of_day, tz):
        return False
    ids = sorted(set(customer_ids))
    for i in range(0, len(ids), IDS_CHUNK):
        part = ids[i : i + IDS_CHUNK]
        session.execute(delete(TierPopulation).where(TierPopulation.customer_id.in_(part)))
    if rows:
        session.execute(
            insert(TierPopulation),
            [
                {"customer_id": c, "spend_365d": f, "days_since_last_order": a, "clv_365d": v}
                for c, f, a, v in rows
            ],
        )
    names = sorted(set(json.loads(state.profile_names)) | set(profile_names))
    state.profile_names = json.dumps(names, ensure_ascii=False)
    session.flush()
    return True


def state_query(table: str) -> str:
    """Return DuckDB SQL reading the state row from the attached `table`."""
    return (
        "SELECT run_id, CAST(as_of_day AS VARCHAR), tz, profile_names, predictive"
        f" FROM {table}"
        f" WHERE id = {STATE_ID}"
    )

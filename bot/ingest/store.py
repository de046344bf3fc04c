"""Write validated rows in large set-based upserts and count what really changed.

`INSERT ... ON CONFLICT (id) DO UPDATE ... WHERE <something differs>` touches only rows
that changed, so re-sending the same data reports them as unchanged and writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from itertools import repeat
from operator import attrgetter, itemgetter, methodcaller
from typing import Any

from sqlalchemy import Table, bindparam, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.db.models import InteractionEvent, Order, ProfileAttribute
from bot.db.types import Money, UTCDateTime, sqlite_datetime
from bot.ingest.linking import attach_customers, link_customers, member_of
from bot.ingest.rows import EVENT_COLUMNS, ORDER_COLUMNS, Kind
from bot.touched import touch

# Orders and events reach the store as tuples in these columns' order (the key first).
ROW_COLUMNS: dict[Kind, tuple[str, ...]] = {"orders": ORDER_COLUMNS, "events": EVENT_COLUMNS}

ORDERS: Table = Order.__table__  # type: ignore[assignment]
EVENTS: Table = InteractionEvent.__table__  # type: ignore[assignment]
PROFILES: Table = ProfileAttribute.__table__  # type: ignore[assignment]


@dataclass
class Outcome:
    """How many rows of a batch were new, changed, or already stored as sent."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    # Customers whose stored rows this batch wrote: the ones a re-tier must look at again.
    changed_customers: set[int] = field(default_factory=set)

    def add(self, other: Outcome) -> None:
        # changed_customers stays the batch's own: the batch marks them as it is written.
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged


def _insert(table: Table, *, session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _existing_keys(table: Table, key: str, keys: list[str], *, session: Session) -> set[str]:
    column = table.c[key]
    return set(session.scalars(select(column).where(member_of(column, keys, session=session))))


def _upsert_by_key(
    rows: list[tuple[Any, ...]],
    *,
    session: Session,
    table: Table,
    columns: tuple[str, ...],
    now: datetime,
) -> Outcome:
    """Upsert row tuples (`columns`, the key first); only rows whose values differ are updated.

    The batch is handled column by column: the rows of a file import arrive by the
    hundred thousand, and per-row Python (a dict per row, a lookup per value) cost more
    than the database's own work.
    """
    if not rows:
        return Outcome()
    key = columns[0]
    cells: dict[str, Sequence[Any]] = dict(zip(columns, zip(*rows, strict=True), strict=True))
    cells["customer_id"] = link_customers(
        cells["external_userid"], cells["unionid"], session=session
    )
    values = ("customer_id", *columns[1:])
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return _sqlite_upsert(cells, session=session, table=table, key=key, values=values, now=now)
    if len(rows) >= COPY_MIN_ROWS:
        return _pg_copy_upsert(cells, session=session, table=table, key=key, values=values, now=now)
    return _pg_values_upsert(cells, session=session, table=table, key=key, values=values, now=now)


def _outcome(rows: int, existing: int, written: int, changed: set[int | None]) -> Outcome:
    inserted = rows - existing
    updated = written - inserted
    changed.discard(None)
    return Outcome(
        inserted=inserted,
        updated=updated,
        unchanged=existing - updated,
        changed_customers=changed,  # type: ignore[arg-type]  # None discarded
    )


_BATCH_CONSTANT = frozenset({"created_at", "updated_at"})


@lru_cache(maxsize=8)
def _upsert_statement(dialect: str, table: Table, key: str, values: tuple[str, ...]) -> Any:
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    columns = (key, *values, "created_at", "updated_at")
    stmt = insert.values({name: bindparam(name) for name in columns})
    excluded = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[table.c[key]],
        set_={**{name: excluded[name] for name in values}, "updated_at": excluded.updated_at},
        where=or_(*(table.c[name].is_distinct_from(excluded[name]) for name in values)),
    )


def _pg_values_upsert(
    cells: dict[str, Sequence[Any]],
    *,
    session: Session,
    table: Table,
    key: str,
    values: tuple[str, ...],
    now: datetime,
) -> Outcome:
    """A small batch: one multi-row INSERT ... ON CONFLICT with SQLAlchemy's typed binds."""
    names = (key, *values)
    rows = [
        {**dict(zip(names, record, strict=True)), "created_at": now, "updated_at": now}
        for record in zip(*(cells[name] for name in names), strict=True)
    ]
    existing = _existing_keys(table, key, list(cells[key]), session=session)
    stmt = _upsert_statement("postgresql", table, key, values)
    # RETURNING names the rows really written; psycopg's executemany has no rowcount.
    written = session.execute(stmt.returning(table.c.customer_id), rows).all()
    return _outcome(len(rows), len(existing), len(written), {w[0] for w in written})


_FEN = methodcaller("scaleb", 2)  # 199.90 -> 19990 (validated: whole fen)
_ISO = methodcaller("isoformat", " ", "microseconds")
_ZONE = attrgetter("tzinfo")


def _encoded(column_type: Any, cells: Sequence[Any], *, sqlite_times: bool) -> Sequence[Any]:
    """A column as stored, exactly as SQLAlchemy's own binds would store it."""
    if isinstance(column_type, Money):
        # Not `None in cells`: comparing a Decimal with None costs two ABC checks.
        try:
            return list(map(int, map(_FEN, cells)))
        except AttributeError:  # a None among them
            return [None if v is None else int(_FEN(v)) for v in cells]
    if sqlite_times and isinstance(column_type, UTCDateTime):
        if None not in cells and set(map(_ZONE, cells)) == {UTC}:
            # sqlite_datetime's text, less the "+00:00" (the range check keeps 4-digit years).
            return [text[:26] for text in map(_ISO, cells)]
        return list(map(sqlite_datetime, cells))
    return cells  # str, int, bool (an int to sqlite3), aware datetimes to psycopg


@lru_cache(maxsize=8)
def _sqlite_plan(stmt: Any) -> tuple[str, tuple[str, ...]]:
    compiled = stmt.compile(dialect=sqlite.dialect())
    return str(compiled), tuple(compiled.positiontup)


def _sqlite_stored(
    table: Table, key: str, values: tuple[str, ...], keys: list[str], *, session: Session
) -> dict[str, tuple[Any, ...]]:
    """The stored rows among `keys`, as SQLite holds them: key -> the `values` columns."""
    # Run bare: the raw stored values, no result type hooks.
    driver = session.connection().connection.driver_connection
    cursor = driver.execute(_sqlite_stored_sql(table, key, values), (json.dumps(keys),))  # type: ignore[union-attr]
    return {row[0]: row[1:] for row in cursor.fetchall()}


@lru_cache(maxsize=8)
def _sqlite_stored_sql(table: Table, key: str, values: tuple[str, ...]) -> str:
    columns = ", ".join(f'"{name}"' for name in (key, *values))
    # Compiled once (SQLAlchemy's compile of it was ~60 ms a batch); json_each as member_of.
    return f'SELECT {columns} FROM "{table.name}" WHERE "{key}" IN (SELECT value FROM json_each(?))'


def _sqlite_upsert(
    cells: dict[str, Sequence[Any]],
    *,
    session: Session,
    table: Table,
    key: str,
    values: tuple[str, ...],
    now: datetime,
) -> Outcome:
    """Run the upsert through the driver's executemany with values encoded column by column.

    SQLAlchemy's bind processing costs more than SQLite's insert itself at a million
    rows. A row whose encoded values equal the stored ones is not sent at all: the
    upsert's `WHERE <a value differs>` would write nothing for it, and an unchanged
    re-import cost SQLite a conflict lookup per row. So every row sent is written, and
    its customer is one whose data changed.
    """
    sql, names = _sqlite_plan(_upsert_statement("sqlite", table, key, values))
    connection = session.connection()
    # The default 2 MB page cache thrashes once the indexes outgrow it; 128 MB keeps a
    # million-row import about three times faster. It only holds pages SQLite reads.
    connection.exec_driver_sql("PRAGMA cache_size=-131072")
    stamp = sqlite_datetime(now)
    columns = [
        repeat(stamp)
        if name in _BATCH_CONSTANT
        else _encoded(table.c[name].type, cells[name], sqlite_times=True)
        for name in names
    ]
    params = list(zip(*columns, strict=False))  # repeat() is endless: stops with the rows
    compared_at = [i for i, name in enumerate(names) if name != key and name not in _BATCH_CONSTANT]
    compared = itemgetter(*compared_at)
    keys = cells[key]
    stored = _sqlite_stored(
        table, key, tuple(names[i] for i in compared_at), list(keys), session=session
    )
    if stored:
        params = [p for p in params if stored.get(p[0]) != compared(p)]
    written = 0
    if params:
        written = int(session.connection().exec_driver_sql(sql, params).rowcount)
    customer_at = names.index("customer_id")
    changed: set[int | None] = {p[customer_at] for p in params}
    return _outcome(len(keys), len(stored), written, changed)


# From this many rows on, PostgreSQL gets a batch by COPY into a temporary table and one
# INSERT ... SELECT: a multi-row VALUES statement of 20,000 rows spent most of its time in
# the driver turning its 200,000 placeholders into PostgreSQL's ($1...) form (~0.6 ms a row).
COPY_MIN_ROWS = 500
_STAGE = "_tagbot_import_stage"


@lru_cache(maxsize=8)
def _pg_copy_plan(table: Table, key: str, values: tuple[str, ...]) -> tuple[str, str, Any]:
    """The staging table's DDL, its COPY, and the one statement that upserts from it.

    The statement joins the stage to the stored rows first: a row stored exactly so is
    left out of the INSERT (ON CONFLICT DO UPDATE would lock it, and write its page, even
    when its WHERE is false), and the join's count of stored keys gives the inserted and
    unchanged counts without another round trip. It answers one row: stored keys, rows
    written, and the distinct customers of the rows written.
    """
    names = (key, *values)
    quoted = ", ".join(f'"{name}"' for name in names)
    target = f'"{table.name}"'
    # ON COMMIT DROP: the stage lives in the batch's transaction only, like its rows.
    create = (
        f'CREATE TEMPORARY TABLE "{_STAGE}" ON COMMIT DROP AS '
        f"SELECT {quoted} FROM {target} WITH NO DATA"
    )
    copy = f'COPY "{_STAGE}" ({quoted}) FROM STDIN'
    differs = " OR ".join(f'o."{name}" IS DISTINCT FROM s."{name}"' for name in values)
    conflict = " OR ".join(
        f'{target}."{name}" IS DISTINCT FROM EXCLUDED."{name}"' for name in values
    )
    sets = ", ".join(f'"{name}" = EXCLUDED."{name}"' for name in (*values, "updated_at"))
    upsert = text(
        f"""
        WITH staged AS MATERIALIZED (
            SELECT s.*, o."{key}" IS NOT NULL AS _stored, (o."{key}" IS NULL OR {differs}) AS _differs
            FROM "{_STAGE}" s LEFT JOIN {target} o ON o."{key}" = s."{key}"
        ), written AS (
            INSERT INTO {target} ({quoted}, "created_at", "updated_at")
            SELECT {quoted}, :now, :now FROM staged WHERE _differs
            ON CONFLICT ("{key}") DO UPDATE SET {sets} WHERE {conflict}
            RETURNING "customer_id"
        )
        SELECT (SELECT count(*) FROM staged WHERE _stored),
               (SELECT count(*) FROM written),
               (SELECT array_agg(DISTINCT "customer_id") FROM written
                WHERE "customer_id" IS NOT NULL)
        """
    ).bindparams(bindparam("now", type_=table.c.updated_at.type))
    return create, copy, upsert


def _pg_copy_upsert(
    cells: dict[str, Sequence[Any]],
    *,
    session: Session,
    table: Table,
    key: str,
    values: tuple[str, ...],
    now: datetime,
) -> Outcome:
    """Upsert a batch through COPY into a temporary table and one INSERT ... SELECT.

    Same semantics as `_pg_values_upsert`: new rows are inserted, stored rows are updated
    only when a value differs, all in the caller's transaction.
    """
    create, copy_sql, upsert = _pg_copy_plan(table, key, values)
    connection = session.connection()
    connection.exec_driver_sql(create)
    records = zip(
        *(_encoded(table.c[name].type, cells[name], sqlite_times=False) for name in (key, *values)),
        strict=True,
    )
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(copy_sql) as copy:
        for record in records:
            copy.write_row(record)
    stored, written, customers = connection.execute(upsert, {"now": now}).one()
    connection.exec_driver_sql(f'DROP TABLE "{_STAGE}"')
    return _outcome(len(cells[key]), stored, written, set(customers or ()))


def upsert_orders(rows: list[tuple[Any, ...]], *, session: Session, now: datetime) -> Outcome:
    """Insert new orders and update changed ones (a refund flips `status`)."""
    return _upsert_by_key(rows, session=session, table=ORDERS, columns=ORDER_COLUMNS, now=now)


def upsert_events(rows: list[tuple[Any, ...]], *, session: Session, now: datetime) -> Outcome:
    """Insert new interactions and update changed ones."""
    return _upsert_by_key(rows, session=session, table=EVENTS, columns=EVENT_COLUMNS, now=now)


def upsert_profiles(rows: list[dict[str, Any]], *, session: Session, now: datetime) -> Outcome:
    """Store each row's attributes; a row counts as updated when any attribute changed."""
    if not rows:
        return Outcome()
    attach_customers(rows, session=session)
    stored: dict[tuple[str, str], str] = {}
    subjects = [r["subject"] for r in rows]
    result = session.execute(
        select(PROFILES.c.subject, PROFILES.c.name, PROFILES.c.value).where(
            member_of(PROFILES.c.subject, subjects, session=session)
        )
    )
    stored.update(((s, n), v) for s, n, v in result)
    known = {subject for subject, _ in stored}
    outcome = Outcome()
    writes: list[dict[str, Any]] = []
    for row in rows:
        subject = row["subject"]
        changed = False
        for name, value in row["attributes"].items():
            if stored.get((subject, name)) != value:
                changed = True
                writes.append(
                    {
                        "subject": subject,
                        "name": name,
                        "value": value,
                        "customer_id": row["customer_id"],
                        "external_userid": row["external_userid"],
                        "unionid": row["unionid"],
                        "updated_at": now,
                    }
                )
        if subject not in known:
            outcome.inserted += 1
        elif changed:
            outcome.updated += 1
        else:
            outcome.unchanged += 1
        if changed and row["customer_id"] is not None:
            outcome.changed_customers.add(row["customer_id"])
    if writes:
        stmt = _insert(PROFILES, session=session)
        excluded = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[PROFILES.c.subject, PROFILES.c.name],
            set_={
                name: excluded[name]
                for name in ("value", "customer_id", "external_userid", "unionid", "updated_at")
            },
        )
        session.execute(stmt, writes)
    return outcome


UPSERTS: dict[Kind, Callable[..., Outcome]] = {
    "orders": upsert_orders,
    "events": upsert_events,
    "profiles": upsert_profiles,
}


def upsert(kind: Kind, rows: list[Any], *, session: Session, now: datetime) -> Outcome:
    """Write a batch of validated rows of one kind; mark changed customers for a re-tier.

    Orders and events are tuples in `ROW_COLUMNS` order, profiles the validator's dicts.
    """
    outcome = UPSERTS[kind](rows, session=session, now=now)
    # Same transaction as the rows: a re-tier is never lost, and never runs before them.
    # Rows sent again unchanged mark nobody: a re-sent file costs no re-tier.
    touch(outcome.changed_customers, session=session)
    return outcome

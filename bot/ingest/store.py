"""Write validated rows in large set-based upserts and count what really changed.

`INSERT ... ON CONFLICT (id) DO UPDATE ... WHERE <something differs>` touches only rows
that changed, so re-sending the same data reports them as unchanged and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Table, bindparam, or_, select
from sqlalchemy import column as sql_column
from sqlalchemy import table as sql_table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.db.models import InteractionEvent, Order, ProfileAttribute
from bot.db.types import Money, UTCDateTime, sqlite_datetime
from bot.ingest.linking import attach_customers, member_of
from bot.ingest.rows import EVENT_COLUMNS, ORDER_COLUMNS, Kind
from bot.touched import touch

ORDERS: Table = Order.__table__  # type: ignore[assignment]
EVENTS: Table = InteractionEvent.__table__  # type: ignore[assignment]
PROFILES: Table = ProfileAttribute.__table__  # type: ignore[assignment]

# What an upsert by id may change: the file's columns but the id, and the linked customer.
_ORDER_VALUES = ("customer_id", *(c for c in ORDER_COLUMNS if c != "order_id"))
_EVENT_VALUES = ("customer_id", *(c for c in EVENT_COLUMNS if c != "event_id"))


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
    rows: list[dict[str, Any]],
    *,
    session: Session,
    table: Table,
    key: str,
    values: tuple[str, ...],
    now: datetime,
) -> Outcome:
    """Upsert rows unique by `key`; only rows whose values differ are updated."""
    if not rows:
        return Outcome()
    attach_customers(rows, session=session)
    dialect = session.get_bind().dialect
    keys = [r[key] for r in rows]
    stmt = _upsert_statement(dialect.name, table, key, values)
    stored: dict[str, tuple[Any, ...]] = {}
    if dialect.name == "sqlite":
        stored = _sqlite_stored(table, key, _sqlite_compared(stmt), keys, session=session)
        existing = set(stored)
    else:
        existing = _existing_keys(table, key, keys, session=session)
    for row in rows:
        row["created_at"] = now
        row["updated_at"] = now
    if dialect.name == "sqlite":
        touched = _sqlite_executemany(stmt, rows, session=session, stored=stored)
        # SQLite's executemany gives a count, not the rows: a batch that wrote anything
        # marks all its customers (a superset); one that wrote nothing marks none.
        changed = {r["customer_id"] for r in rows} if touched else set()
    elif len(rows) >= COPY_MIN_ROWS:
        linked = _pg_copy_upsert(rows, session=session, table=table, key=key, values=values)
        touched = len(linked)
        changed = set(linked)
    else:
        # RETURNING names the rows really written; psycopg's executemany has no rowcount.
        written = session.execute(stmt.returning(table.c.customer_id), rows).all()
        touched = len(written)
        changed = {w[0] for w in written}
    inserted = len(rows) - len(existing)
    updated = touched - inserted
    changed.discard(None)
    return Outcome(
        inserted=inserted,
        updated=updated,
        unchanged=len(existing) - updated,
        changed_customers=changed,
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


def _sqlite_encoder(column_type: Any) -> Callable[[Any], Any] | None:
    """Return a fast encoder giving exactly what SQLAlchemy would store, or None for as-is."""
    if isinstance(column_type, Money):
        return lambda v: None if v is None else int(v * 100)  # validated: whole fen
    if isinstance(column_type, UTCDateTime):
        return sqlite_datetime
    return None  # str, int, and bool (an int to sqlite3) go through as they are


@lru_cache(maxsize=8)
def _sqlite_plan(stmt: Any) -> tuple[str, tuple[str, ...], tuple[Callable[[Any], Any] | None, ...]]:
    compiled = stmt.compile(dialect=sqlite.dialect())
    names = tuple(compiled.positiontup)
    table = stmt.table
    encoders = tuple(_sqlite_encoder(table.c[name].type) for name in names)
    return str(compiled), names, encoders


def _sqlite_compared(stmt: Any) -> tuple[str, ...]:
    """The columns an upsert compares before writing, in the order its parameters bind."""
    _, names, _ = _sqlite_plan(stmt)
    return tuple(name for name in names[1:] if name not in _BATCH_CONSTANT)


def _sqlite_stored(
    table: Table, key: str, values: tuple[str, ...], keys: list[str], *, session: Session
) -> dict[str, tuple[Any, ...]]:
    """The stored rows among `keys`, as SQLite holds them: key -> the `values` columns."""
    columns = [table.c[key], *(table.c[name] for name in values)]
    query = select(*columns).where(member_of(table.c[key], keys, session=session))
    # Compiled once per batch, run bare: the raw stored values, no result type hooks.
    compiled = query.compile(dialect=sqlite.dialect())
    params = tuple(compiled.params[name] for name in compiled.positiontup or ())
    cursor = session.connection().exec_driver_sql(str(compiled), params)
    return {row[0]: tuple(row[1:]) for row in cursor}


def _sqlite_executemany(
    stmt: Any,
    rows: list[dict[str, Any]],
    *,
    session: Session,
    stored: dict[str, tuple[Any, ...]],
) -> int:
    """Run the upsert through the driver's executemany, skipping per-value type hooks.

    SQLAlchemy's bind processing costs more than SQLite's insert itself at a million
    rows; the encoders above produce the same stored values at a fraction of the cost.
    A row whose encoded values equal the `stored` ones is not sent at all: the upsert's
    `WHERE <a value differs>` would write nothing for it, and an unchanged re-import
    cost SQLite a conflict lookup per row.
    """
    sql, names, encoders = _sqlite_plan(stmt)
    connection = session.connection()
    # The default 2 MB page cache thrashes once the indexes outgrow it; 128 MB keeps a
    # million-row import about three times faster. It only holds pages SQLite reads.
    connection.exec_driver_sql("PRAGMA cache_size=-131072")
    pick = itemgetter(*names)
    # created_at/updated_at are the same for the whole batch: encode them once.
    constant = [
        (i, enc(rows[0][name]) if enc else rows[0][name])
        for i, (name, enc) in enumerate(zip(names, encoders, strict=True))
        if name in _BATCH_CONSTANT
    ]
    encode = [
        (i, enc)
        for i, (name, enc) in enumerate(zip(names, encoders, strict=True))
        if enc is not None and name not in _BATCH_CONSTANT
    ]
    # The key binds first (it leads the statement's columns); the rest as _sqlite_compared.
    compared = itemgetter(
        *(i for i, name in enumerate(names[1:], 1) if name not in _BATCH_CONSTANT)
    )
    params: list[tuple[Any, ...]] = []
    for row in rows:
        values = list(pick(row))
        for i, enc in encode:
            values[i] = enc(values[i])
        before = stored.get(values[0])
        if before is not None and before == compared(values):
            continue  # stored exactly so: the upsert would leave it alone
        for i, value in constant:
            values[i] = value
        params.append(tuple(values))
    if not params:
        return 0
    result = connection.exec_driver_sql(sql, params)
    return int(result.rowcount)


# From this many rows on, PostgreSQL gets a batch by COPY into a temporary table and one
# INSERT ... SELECT: a multi-row VALUES statement of 20,000 rows spent most of its time in
# the driver turning its 200,000 placeholders into PostgreSQL's ($1...) form (~0.6 ms a row).
COPY_MIN_ROWS = 500
_STAGE = "_tagbot_import_stage"


def _pg_encoder(column_type: Any) -> Callable[[Any], Any] | None:
    """Return an encoder giving what SQLAlchemy would store on PostgreSQL, or None for as-is."""
    if isinstance(column_type, Money):
        return lambda v: None if v is None else int(v * 100)  # validated: whole fen
    return None  # aware datetimes, str, int, bool: psycopg's COPY writes them as they are


@lru_cache(maxsize=8)
def _pg_copy_plan(
    table: Table, key: str, values: tuple[str, ...]
) -> tuple[str, str, Any, tuple[Callable[[Any], Any] | None, ...]]:
    """The staging table's DDL, its COPY, the upsert from it, and one encoder per column."""
    names = (key, *values)
    quoted = ", ".join(f'"{name}"' for name in names)
    # ON COMMIT DROP: the stage lives in the batch's transaction only, like its rows.
    create = (
        f'CREATE TEMPORARY TABLE "{_STAGE}" ON COMMIT DROP AS '
        f'SELECT {quoted} FROM "{table.name}" WITH NO DATA'
    )
    copy = f'COPY "{_STAGE}" ({quoted}) FROM STDIN'
    stage = sql_table(_STAGE, *(sql_column(name) for name in names))
    now = bindparam("now", type_=table.c.updated_at.type)
    insert = postgresql.insert(table).from_select(
        [*names, "created_at", "updated_at"], select(*stage.c, now, now)
    )
    excluded = insert.excluded
    upsert = insert.on_conflict_do_update(
        index_elements=[table.c[key]],
        set_={**{name: excluded[name] for name in values}, "updated_at": excluded.updated_at},
        where=or_(*(table.c[name].is_distinct_from(excluded[name]) for name in values)),
    ).returning(table.c.customer_id)
    encoders = tuple(_pg_encoder(table.c[name].type) for name in names)
    return create, copy, upsert, encoders


def _pg_copy_upsert(
    rows: list[dict[str, Any]],
    *,
    session: Session,
    table: Table,
    key: str,
    values: tuple[str, ...],
) -> list[int | None]:
    """Upsert rows unique by `key` through COPY; return the customer_id of each row written.

    Same statement semantics as the executemany path (`_upsert_statement`): new rows are
    inserted, stored rows are updated only when a value differs, all in the caller's
    transaction.
    """
    create, copy_sql, upsert, encoders = _pg_copy_plan(table, key, values)
    connection = session.connection()
    connection.exec_driver_sql(create)
    pick = itemgetter(key, *values)
    encode = [(i, enc) for i, enc in enumerate(encoders) if enc is not None]
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(copy_sql) as copy:
        for row in rows:
            record = list(pick(row))
            for i, enc in encode:
                record[i] = enc(record[i])
            copy.write_row(record)
    written = connection.execute(upsert, {"now": rows[0]["updated_at"]}).scalars().all()
    connection.exec_driver_sql(f'DROP TABLE "{_STAGE}"')
    return list(written)


def upsert_orders(rows: list[dict[str, Any]], *, session: Session, now: datetime) -> Outcome:
    """Insert new orders and update changed ones (a refund flips `status`)."""
    return _upsert_by_key(
        rows, session=session, table=ORDERS, key="order_id", values=_ORDER_VALUES, now=now
    )


def upsert_events(rows: list[dict[str, Any]], *, session: Session, now: datetime) -> Outcome:
    """Insert new interactions and update changed ones."""
    return _upsert_by_key(
        rows, session=session, table=EVENTS, key="event_id", values=_EVENT_VALUES, now=now
    )


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


UPSERTS = {"orders": upsert_orders, "events": upsert_events, "profiles": upsert_profiles}


def upsert(kind: Kind, rows: list[dict[str, Any]], *, session: Session, now: datetime) -> Outcome:
    """Write a batch of validated rows of one kind; mark changed customers for a re-tier."""
    outcome = UPSERTS[kind](rows, session=session, now=now)
    # Same transaction as the rows: a re-tier is never lost, and never runs before them.
    # Rows sent again unchanged mark nobody: a re-sent file costs no re-tier.
    touch(outcome.changed_customers, session=session)
    return outcome

"""Attach the operational database to DuckDB, read-only, through the packaged scanners.

The scanner extensions come from PyPI packages (`duckdb-ext-sqlite`, `duckdb-ext-postgres`)
that put the extension files under `duckdb_ext/extensions/v<version>/<platform>/`; we
point DuckDB's extension directory there and never let it download anything.
"""

from __future__ import annotations

import importlib.util
import itertools
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.db import Database
from bot.errors import TagbotError

ALIAS = "src"
FULL_SNAPSHOT = "source-snapshot.db"
TOUCHED_SNAPSHOT = "source-touched.db"

# What a touched run reads: these tables' rows of its customers (by this key) ...
CUSTOMER_TABLES = {
    "customers": "id",
    "orders": "customer_id",
    "interaction_events": "customer_id",
    "follow_relations": "customer_id",
    "profile_attributes": "customer_id",
    "tier_assignments": "customer_id",
    "campaign_deliveries": "customer_id",  # reach metrics
}
# ... the group stays of its customers (keyed by external_userid, as WeCom names members) ...
MEMBER_TABLES = {"group_members": "member_userid"}
# ... and these small tables whole.
WHOLE_TABLES = ("channels", "campaign_runs", "tier_population_state", "group_chats")
# The stored rank population, whole, when a touched run loads it (bot.tiering.population).
POPULATION_TABLE = "tier_population"


class MetricsSourceError(TagbotError):
    """The operational database cannot be read by the metrics engine."""


def extension_directory() -> Path:
    """Return the directory the duckdb-ext-* packages install their extension files into."""
    spec = importlib.util.find_spec("duckdb_ext")
    if spec is None or not spec.submodule_search_locations:
        raise MetricsSourceError("DuckDB 扩展包未安装（duckdb-ext-sqlite / duckdb-ext-postgres）")
    return Path(next(iter(spec.submodule_search_locations))) / "extensions"


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Load a packaged DuckDB extension (sqlite_scanner, postgres_scanner) without network."""
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET extension_directory = ?", [str(extension_directory())])
    try:
        con.execute(f"LOAD {name}")
    except duckdb.Error as exc:
        raise MetricsSourceError(f"cannot load DuckDB extension {name}: {exc}") from exc


@dataclass(frozen=True)
class Source:
    """How the engine names the operational tables once attached."""

    backend: str  # sqlite | postgresql | duckdb
    prefix: str  # e.g. src.main or src."tagbot" — prepended to table names
    aware_timestamps: bool  # PostgreSQL hands TIMESTAMPTZ; SQLite and DuckDB naive UTC

    def table(self, name: str) -> str:
        """Return the qualified name of an operational table."""
        return f"{self.prefix}.{name}"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _pg_dsn(db: Database) -> str:
    """Return a libpq key=value string for the database's URL (search_path dropped)."""
    url = make_url(db.url)
    parts = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
    }
    # Values are quoted per libpq rules so a password with spaces or quotes survives.
    return " ".join(
        "{}='{}'".format(k, str(v).replace("\\", "\\\\").replace("'", "\\'"))
        for k, v in parts.items()
        if v is not None
    )


def snapshot_sqlite(db: Database, dest: Path) -> None:
    """Copy the bot's SQLite database to `dest`: a consistent snapshot for the scanner.

    The scanner links its own copy of SQLite. Two SQLite libraries in one process must never
    open the same file: POSIX locks are per process, so each library takes the other's
    connections for its own, a close drops the other's locks and a "last" connection
    checkpoints the WAL under the bot's feet — measured here: a corrupted index after one
    demo run. So the scanner only ever reads a copy made by the bot's own SQLite (the online
    backup API, which reads a consistent snapshot while writers go on).
    """
    path = make_url(db.url).database
    if not path or path == ":memory:":
        raise MetricsSourceError("an in-memory SQLite database cannot be attached")
    dest.unlink(missing_ok=True)
    source = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(dest)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def snapshot_sqlite_customers(
    db: Database, dest: Path, customer_ids: Sequence[int], *, population: bool = False
) -> None:
    """Copy what a touched run reads of `customer_ids` to `dest`, by the bot's own SQLite.

    The same safety as `snapshot_sqlite` at the size of the touched customers' rows, not the
    whole file: each table of CUSTOMER_TABLES with their rows only (its customer_id index),
    WHOLE_TABLES in full, all read in one transaction (one consistent snapshot). What the
    population holds comes from elsewhere: its ranks from the engine's kept population or,
    with `population`, the stored one copied whole here too; the tag_from values held
    from `bot.tiering.tag_values`.
    """
    path = make_url(db.url).database
    if not path or path == ":memory:":
        raise MetricsSourceError("an in-memory SQLite database cannot be attached")
    dest.unlink(missing_ok=True)
    con = sqlite3.connect(dest, isolation_level=None)
    try:
        con.execute("ATTACH ? AS live", [f"{Path(path).resolve().as_uri()}?mode=ro"])
        con.execute("CREATE TEMP TABLE touched_ids (id INTEGER PRIMARY KEY)")
        con.executemany(
            "INSERT OR IGNORE INTO temp.touched_ids VALUES (?)", [(int(i),) for i in customer_ids]
        )
        con.execute("BEGIN")
        whole = (*WHOLE_TABLES, POPULATION_TABLE) if population else WHOLE_TABLES
        for table in (*CUSTOMER_TABLES, *MEMBER_TABLES, *whole):
            row = con.execute(
                "SELECT sql FROM live.sqlite_master WHERE type = 'table' AND name = ?", [table]
            ).fetchone()
            if row is None:
                raise MetricsSourceError(f"table {table} missing from the database")
            con.execute(row[0])  # the same declared types: the scanner reads them alike
            where = ""
            if table in CUSTOMER_TABLES:
                where = f" WHERE {CUSTOMER_TABLES[table]} IN (SELECT id FROM temp.touched_ids)"
            elif table in MEMBER_TABLES:
                where = (
                    f" WHERE {MEMBER_TABLES[table]} IN (SELECT external_userid FROM live.customers"
                    " WHERE id IN (SELECT id FROM temp.touched_ids))"
                )
            con.execute(f"INSERT INTO main.{table} SELECT * FROM live.{table}{where}")
        con.execute("COMMIT")
        con.execute("DETACH live")
    finally:
        con.close()


def attach(
    con: duckdb.DuckDBPyConnection,
    db: Database,
    *,
    workdir: Path,
    customer_ids: Sequence[int] | None = None,
    population: bool = False,
) -> Source:
    """Attach the bot's database to `con` read-only and return how to name its tables.

    SQLite is attached as a fresh snapshot in `workdir` (see `snapshot_sqlite`); with
    `customer_ids`, a snapshot of those customers' rows only (`snapshot_sqlite_customers`),
    plus the stored rank population with `population`.
    """
    if db.is_sqlite:
        if customer_ids is None:
            copy = workdir / FULL_SNAPSHOT
            (workdir / TOUCHED_SNAPSHOT).unlink(missing_ok=True)
            snapshot_sqlite(db, copy)
        else:
            copy = workdir / TOUCHED_SNAPSHOT
            discard(workdir / FULL_SNAPSHOT)
            snapshot_sqlite_customers(db, copy, customer_ids, population=population)
        load_extension(con, "sqlite_scanner")
        con.execute(f"ATTACH {_literal(str(copy))} AS {ALIAS} (TYPE sqlite, READ_ONLY)")
        return Source("sqlite", f"{ALIAS}.main", aware_timestamps=False)
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        load_extension(con, "postgres_scanner")
        con.execute(
            f"ATTACH {_literal(_pg_dsn(db))} AS {ALIAS}"
            f" (TYPE postgres, READ_ONLY, SCHEMA {_literal(str(schema))})"
        )
        quoted = '"' + str(schema).replace('"', '""') + '"'
        return Source("postgresql", f"{ALIAS}.{quoted}", aware_timestamps=True)
    raise MetricsSourceError(f"unsupported database for metrics: {db.engine.dialect.name}")


_discarded = itertools.count(1)


def discard(path: Path) -> None:
    """Remove a snapshot off the caller's path, in a thread of its own.

    Unlinking the full copy of a large file costs the kernel time to free its cached
    pages (0.7 s for 5 GB at 1M customers), which a touched run would otherwise wait for.
    The rename is immediate; whatever the thread leaves the engine's close removes.
    """
    n = next(_discarded)
    doomed: list[Path] = []
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        gone = part.with_name(f"discarded-{n}-{part.name}")
        try:
            part.rename(gone)
        except FileNotFoundError:
            continue
        doomed.append(gone)
    if doomed:
        threading.Thread(
            target=_unlink_all, args=(doomed,), name="snapshot-discard", daemon=True
        ).start()


def _unlink_all(paths: list[Path]) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def reattach(
    con: duckdb.DuckDBPyConnection,
    db: Database,
    *,
    workdir: Path,
    customer_ids: Sequence[int] | None = None,
    population: bool = False,
) -> Source:
    """Attach the database again: on SQLite a new snapshot, so a later run reads fresh rows."""
    con.execute(f"DETACH {ALIAS}")
    return attach(con, db, workdir=workdir, customer_ids=customer_ids, population=population)


def attach_duckdb(con: duckdb.DuckDBPyConnection, path: str) -> Source:
    """Attach a DuckDB file holding the bot's tables natively (the bench's comparison)."""
    con.execute(f"ATTACH {_literal(path)} AS {ALIAS} (READ_ONLY)")
    return Source("duckdb", f"{ALIAS}.main", aware_timestamps=False)


def scan(
    source: Source,
    table: str,
    columns: str,
    where: str,
    ids: list[int] | None,
    *,
    direct: bool = False,
) -> str:
    """Return a FROM item reading `columns` of `table` under `where` (portable SQL).

    With `ids`, the filter runs inside the operational database (its customer_id index),
    not after a full scan in DuckDB: a touched re-tier reads only its customers' rows.
    `direct` sends a small table's query as is too (the scanner's set-up costs more).
    """
    if ids is None and not direct:
        return f"(SELECT {columns} FROM {source.table(table)} WHERE {where})"
    inner = f"SELECT {columns} FROM {{}} WHERE ({where})"
    if ids is not None:
        id_list = ", ".join(str(int(i)) for i in ids) or "NULL"
        key = "id" if table == "customers" else "customer_id"
        inner += f" AND {key} IN ({id_list})"
    if source.backend == "sqlite":
        return "sqlite_query('{}', '{}')".format(ALIAS, inner.format(table).replace("'", "''"))
    if source.backend == "postgresql":
        qualified = source.prefix.split(".", 1)[1] + "." + table
        return "postgres_query('{}', '{}')".format(
            ALIAS, inner.format(qualified).replace("'", "''")
        )
    return f"({inner.format(source.table(table))})"


def native(source: Source, sql: str, tables: Sequence[str]) -> str:
    """Return a FROM item running `sql` inside the operational database (portable SQL).

    `sql` names each of `tables` as `{table}`; a join the database can do with its own
    indexes (e.g. by external_userid) is sent whole instead of scanning each table.
    """
    if source.backend == "sqlite":
        inner = sql.format(**{t: t for t in tables})
        return "sqlite_query('{}', '{}')".format(ALIAS, inner.replace("'", "''"))
    if source.backend == "postgresql":
        schema = source.prefix.split(".", 1)[1]
        inner = sql.format(**{t: f"{schema}.{t}" for t in tables})
        return "postgres_query('{}', '{}')".format(ALIAS, inner.replace("'", "''"))
    return f"({sql.format(**{t: source.table(t) for t in tables})})"


def timestamp_expr(source: Source, column: str) -> str:
    """Return SQL for a column as a naive UTC TIMESTAMP, whatever the backend stored."""
    if source.aware_timestamps:
        return f"timezone('UTC', {column})"
    return f"CAST({column} AS TIMESTAMP)"


def boolean_expr(source: Source, column: str) -> str:
    """Return SQL for a boolean column (SQLite stores 0/1, its queries hand text)."""
    if source.backend == "sqlite":
        return f"(CAST({column} AS BIGINT) <> 0)"
    return f"CAST({column} AS BOOLEAN)"

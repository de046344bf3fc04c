"""Copy a touched run's rows out of PostgreSQL into the engine's DuckDB, by psycopg's COPY.

Through the postgres scanner each query of a touched run cost 0.1–0.3 s at a million
customers however few its rows (see `bench/retier_run.py`), and a run makes ten. Here one
REPEATABLE READ transaction on the bot's own pool (one consistent snapshot, as the SQLite
copy has) COPYs the rows of `source.CUSTOMER_TABLES` for those customers, and
`source.WHOLE_TABLES` whole, as CSV — written by PostgreSQL, parsed by DuckDB's reader,
both in C — into a schema of the engine's database that the run then reads as a source.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
from sqlalchemy.engine import Connection

from bot.db import Database
from bot.tiering.metrics_relations import quote_ident
from bot.tiering.source import CUSTOMER_TABLES, WHOLE_TABLES, MetricsSourceError, Source

SCHEMA = "touched_copy"

# PostgreSQL type -> DuckDB column type; the rest (text, varchar, json, ...) stays VARCHAR,
# which the engine casts where it needs another type.
_TYPES = {
    "smallint": "BIGINT",
    "integer": "BIGINT",
    "bigint": "BIGINT",
    "boolean": "BOOLEAN",
    "double precision": "DOUBLE",
    "real": "DOUBLE",
    "date": "DATE",
    "timestamp with time zone": "TIMESTAMPTZ",
    "timestamp without time zone": "TIMESTAMP",
}

_COLUMNS = """
    SELECT c.relname, a.attname, format_type(a.atttypid, NULL)
    FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid
    WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY(%s)
      AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY c.relname, a.attnum"""


def _columns(conn: Connection) -> dict[str, list[tuple[str, str]]]:
    """Return each copied table's columns with their DuckDB types, in table order."""
    names = [*CUSTOMER_TABLES, *WHOLE_TABLES]
    out: dict[str, list[tuple[str, str]]] = {}
    for table, column, pg_type in conn.exec_driver_sql(_COLUMNS, (names,)).all():
        out.setdefault(str(table), []).append((str(column), _TYPES.get(str(pg_type), "VARCHAR")))
    missing = [t for t in names if t not in out]
    if missing:
        raise MetricsSourceError(f"tables missing from the database: {', '.join(missing)}")
    return out


def _copy_out(conn: Connection, table: str, ids: str | None, dest: Path) -> None:
    """Write `table`'s rows (of the customers in `ids`, a bigint[] literal) to `dest` as CSV."""
    where = ""
    if ids is not None:
        where = f" WHERE {quote_ident(CUSTOMER_TABLES[table])} = ANY('{ids}'::bigint[])"
    raw = conn.connection.driver_connection  # psycopg 3, inside this snapshot's transaction
    assert raw is not None
    with raw.cursor() as cur, dest.open("wb") as out:
        sql = f"COPY (SELECT * FROM {quote_ident(table)}{where}) TO STDOUT (FORMAT csv)"
        with cur.copy(sql) as copy:
            for chunk in copy:
                out.write(chunk)


def _load(target: str, columns: list[tuple[str, str]], path: Path) -> str:
    """Return SQL creating `target` from a table's CSV file."""
    spec = ", ".join(f"'{c.replace(chr(39), chr(39) * 2)}': '{t}'" for c, t in columns)
    # PostgreSQL writes NULL unquoted and an empty string as "": keep the two apart.
    return (
        f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM read_csv("
        f"'{str(path).replace(chr(39), chr(39) * 2)}', columns = {{{spec}}}, header = false,"
        " delim = ',', quote = '\"', escape = '\"', allow_quoted_nulls = false,"
        " auto_detect = false)"
    )


def copy_customers(
    con: duckdb.DuckDBPyConnection,
    db: Database,
    customer_ids: Sequence[int],
    *,
    catalog: str,
    workdir: Path,
) -> Source:
    """Copy what a touched run reads of `customer_ids` into DuckDB; return it as a source."""
    ids = "{" + ",".join(str(int(i)) for i in sorted(set(customer_ids))) + "}"
    files: list[tuple[str, Path]] = []
    with db.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        # CSV times in UTC with an offset, ISO order: DuckDB parses them as TIMESTAMPTZ.
        conn.exec_driver_sql("SET LOCAL TimeZone = 'UTC'")
        conn.exec_driver_sql("SET LOCAL DateStyle = 'ISO, YMD'")
        columns = _columns(conn)
        for table in (*CUSTOMER_TABLES, *WHOLE_TABLES):
            path = workdir / f"copy-{table}.csv"
            _copy_out(conn, table, ids if table in CUSTOMER_TABLES else None, path)
            files.append((table, path))
        conn.rollback()  # read only: nothing to keep
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {catalog}.{SCHEMA}")
    for table, path in files:
        con.execute(_load(f"{catalog}.{SCHEMA}.{quote_ident(table)}", columns[table], path))
        path.unlink()
    return Source("duckdb", f"{catalog}.{SCHEMA}", aware_timestamps=True)

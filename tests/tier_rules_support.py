"""Run compiled tier SQL over real in-memory DuckDB tables built from Python rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import duckdb

from bot.rules import quote_ident
from bot.rules.vocabulary import BY_NAME, GROUP_NAMES_COLUMN, PROFILE_PREFIX

_SQL_TYPES = {"number": "DOUBLE", "string": "VARCHAR", "boolean": "BOOLEAN"}


def column_type(name: str) -> str:
    """Return the DuckDB type the metrics table uses for a name."""
    if name in BY_NAME:
        return _SQL_TYPES[BY_NAME[name].kind]
    if name == "cur_since_days":
        return "INTEGER"
    if name == GROUP_NAMES_COLUMN:
        return "VARCHAR[]"
    if name.startswith(PROFILE_PREFIX) or name.startswith("tier.") or name == "cur_tier":
        return "VARCHAR"
    raise KeyError(name)


def table(
    con: duckdb.DuckDBPyConnection, rows: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> None:
    """Create table `metrics` (customer_id plus `names`) holding `rows` (absent keys: NULL)."""
    cols = ", ".join(f"{quote_ident(n)} {column_type(n)}" for n in names)
    con.execute(f"CREATE OR REPLACE TABLE metrics (customer_id INTEGER, {cols})")
    marks = ", ".join("?" for _ in range(len(names) + 1))
    if rows:
        con.executemany(
            f"INSERT INTO metrics VALUES ({marks})",
            [[i, *(row.get(n) for n in names)] for i, row in enumerate(rows)],
        )


def select(sql_expr: str, rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[Any]:
    """Return `sql_expr` evaluated by DuckDB on each row, in row order."""
    con = duckdb.connect()
    try:
        table(con, rows, names)
        return [
            r[0]
            for r in con.execute(f"SELECT {sql_expr} FROM metrics ORDER BY customer_id").fetchall()
        ]
    finally:
        con.close()

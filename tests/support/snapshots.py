"""What a metrics engine has attached: the file its scanner reads and that file's tables."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.tiering.engine import MetricsEngine
from bot.tiering.source import ALIAS


def attached_path(engine: MetricsEngine) -> Path:
    """Return the file the engine's scanner reads the operational tables from."""
    row = engine.con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = ?", [ALIAS]
    ).fetchone()
    assert row is not None
    return Path(str(row[0]))


def copied_tables(engine: MetricsEngine) -> set[str]:
    """Return the tables of the SQLite copy the engine reads."""
    con = sqlite3.connect(attached_path(engine))
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()

"""A write transaction on the bare DB-API connection, for the few hottest short writes.

One INSERT through a SQLAlchemy session costs about 0.3 ms of CPU on this project's
machine (session, pool, compile cache, bind and result processing, the begin event);
the same SQL through the driver about 0.08 ms. The callback ack pays it on every scan,
so its store goes through here (`Database.write_driver`), and so do the WeCom budget's
bookings (bot/wecom/budget.py: several a second per API under load). Everything else
writes through `Database.write()`.

SQL is written with `:name` parameters and values already in the form the driver
stores (`bot.db.types.sqlite_datetime` for times on SQLite; psycopg takes aware
datetimes as they are). Each statement and commit is announced to the engine's
`before_cursor_execute` and `commit` listeners (with no SQLAlchemy connection), so
whoever watches the engine's statements sees these too.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine

_NAMED = re.compile(r"(?<![:\w]):(\w+)")


@lru_cache(maxsize=64)
def pyformat(sql: str) -> str:
    """Rewrite `:name` parameters as psycopg's `%(name)s`."""
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


class DriverWrite:
    """One open write transaction on a DB-API connection (see `Database.write_driver`)."""

    def __init__(self, engine: Engine, connection: Any) -> None:
        self.dialect = engine.dialect.name
        self._dispatch: Any = engine.dispatch
        self._connection = connection
        self._sqlite = self.dialect == "sqlite"

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> tuple[Any, ...] | None:
        """Run one statement; return its first row (RETURNING), or None."""
        rows = self._run(sql, params, every=False)
        return rows[0] if rows else None

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one query; return all its rows."""
        return self._run(sql, params, every=True)

    def _run(
        self, sql: str, params: dict[str, Any] | None, *, every: bool
    ) -> list[tuple[Any, ...]]:
        cursor = self._connection.cursor()
        try:
            if not self._sqlite:
                sql = pyformat(sql)
            if self._dispatch.before_cursor_execute:
                self._dispatch.before_cursor_execute(None, cursor, sql, params, None, False)
            cursor.execute(sql, params or ())
            if not cursor.description:
                return []
            if every:
                return [tuple(row) for row in cursor.fetchall()]
            row = cursor.fetchone()
            return [] if row is None else [tuple(row)]
        finally:
            cursor.close()

    def fetchall(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one query; return all its rows."""
        cursor = self._connection.cursor()
        try:
            if not self._sqlite:
                sql = pyformat(sql)
            if self._dispatch.before_cursor_execute:
                self._dispatch.before_cursor_execute(None, cursor, sql, params, None, False)
            cursor.execute(sql, params or ())
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def begin(self) -> None:
        """Start the transaction: on SQLite with the write lock taken at once."""
        if self._sqlite:  # psycopg opens one implicitly at the first statement
            self.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        if self._dispatch.commit:
            self._dispatch.commit(None)
        self._connection.commit()

    def rollback(self) -> None:
        self._connection.rollback()

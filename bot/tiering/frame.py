"""The computed metrics: a DuckDB table `metrics`, one row per customer, for rules to query."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

import duckdb

from bot.tiering.metrics_predictive import Model

TABLE = "metrics"


class MetricFrame:
    """The `metrics` table of one run, in a DuckDB connection the caller can query.

    Columns: `customer_id`, each vocabulary metric by name, then `"profile.<name>"` (text)
    for each imported attribute name. Query it with `frame.con.execute(...)`; unqualified
    `metrics` names this run's table. `close()` drops it and closes the connection.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        *,
        schema: str,
        as_of: datetime,
        tz: str,
        profile_names: list[str],
        owner: Any = None,
    ) -> None:
        self.con = con
        self.schema = schema
        self.as_of = as_of
        self.tz = tz
        self.profile_names = profile_names
        self._owner = owner  # closed with the frame (compute_metrics' one-shot engine)
        # The predictive model its p_alive … clv_percentile come from (None: none yet).
        self.model: Model | None = None
        # The local day whose buyers its ranks count among (an earlier one: `stale_ok`).
        self.population_day: date | None = None
        self._closed = False

    @property
    def table(self) -> str:
        """Return the table's name, unqualified (the frame's connection resolves it)."""
        return TABLE

    @property
    def columns(self) -> list[str]:
        """Return the table's column names in order."""
        return [r[0] for r in self.con.execute(f"DESCRIBE {TABLE}").fetchall()]

    def count(self) -> int:
        """Return the number of customers in the frame."""
        row = self.con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
        return int(row[0]) if row else 0

    def rows(self, customer_ids: Iterable[int] | None = None) -> dict[int, dict[str, Any]]:
        """Return rows as {customer_id: {column: value}} (all, or those customers)."""
        sql = f"SELECT * FROM {TABLE}"
        params: list[Any] = []
        if customer_ids is not None:
            sql += " WHERE customer_id IN (SELECT unnest(?::BIGINT[]))"
            params.append(list(customer_ids))
        cur = self.con.execute(sql + " ORDER BY customer_id", params)
        names = [d[0] for d in cur.description]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}

    def close(self) -> None:
        """Drop the table and close the frame's connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.con.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        finally:
            self.con.close()
            if self._owner is not None:
                self._owner.close()

    def __enter__(self) -> MetricFrame:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

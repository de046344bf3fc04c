"""Evaluate the dimensions in DuckDB over a metric frame, and diff against current tiers.

All set-based, in the frame's connection (tables land in the frame's schema and go with
it): `cur` holds the current assignments of the frame's customers, `tiers` the metrics
with each dimension's current tier (`"cur_tier.<dim>"`, `"cur_since.<dim>"`) and this
run's tier (`"tier.<dim>"`, evaluated in config order so later rules may read earlier
tiers), and `changes` one row per (customer, dimension) whose tier differs, with the
values of the metrics that dimension's rules read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb

from bot.rules import (
    OTHER_TAG,
    Dimension,
    TagFromDimension,
    compile_dimension,
    compile_tag_from,
    name_sql,
    quote_ident,
    quote_string,
    tag_value_sql,
)
from bot.rules.vocabulary import PROFILE_PREFIX
from bot.tiering.clock import Clock
from bot.tiering.source import Source, scan, timestamp_expr

TIERS = "tiers"
CHANGES = "changes"


def tier_column(dim: str) -> str:
    """Return the column holding this run's tier of a dimension (as rules name it)."""
    return quote_ident(f"tier.{dim}")


def current_column(dim: str) -> str:
    return quote_ident(f"cur_tier.{dim}")


def since_column(dim: str) -> str:
    return quote_ident(f"cur_since.{dim}")


@dataclass(frozen=True)
class Move:
    """How many customers moved from one tier to another in a dimension (None = no tier)."""

    dimension: str
    from_tier: str | None
    to_tier: str | None
    customers: int


def load_current(
    con: duckdb.DuckDBPyConnection, source: Source, *, clock: Clock, ids: list[int] | None
) -> None:
    """Stage the current assignments as `cur(customer_id, dimension, tier, since_days)`."""
    rows = scan(source, "tier_assignments", "customer_id, dimension, tier, since", "1 = 1", ids)
    con.execute(f"""
        CREATE TABLE cur AS
        SELECT x.customer_id, x.dimension, x.tier, {clock.days_ago("x.since")} AS since_days
        FROM (SELECT CAST(customer_id AS BIGINT) AS customer_id,
                     CAST(dimension AS VARCHAR) AS dimension, CAST(tier AS VARCHAR) AS tier,
                     {timestamp_expr(source, "since")} AS since
              FROM {rows}) AS x""")


def _touched_tag_from(dim: TagFromDimension, known: list[str]) -> str:
    """Return a SELECT of (customer_id, tag) for a touched run: the population's fold, kept.

    `known` are the tags held now (values, and 其他 when someone holds it). A value someone
    holds keeps its tag. New values are ranked among the touched customers the way a full
    run ranks all (most held first, ties by value), after the held ones: a new value gets
    its own tag while the held tags and the new values fit in max_tags, or while its place
    leaves the 其他 slot free; else 其他 (the next full run re-ranks them all).
    """
    value = tag_value_sql(dim, table=TIERS)
    named = [v for v in known if v != OTHER_TAG]
    used = len(named) + (OTHER_TAG in known)
    other = quote_string(OTHER_TAG)
    held = f"v.value IN ({', '.join(quote_string(v) for v in named)})" if named else "FALSE"
    k = dim.max_tags
    return (
        f"WITH v AS (SELECT customer_id, {value} AS value FROM {TIERS}), "
        f"n AS (SELECT value, COUNT(*) AS c FROM v WHERE value IS NOT NULL AND value <> {other}"
        f" AND NOT ({held}) GROUP BY value), "
        "r AS (SELECT value, ROW_NUMBER() OVER (ORDER BY c DESC, value) AS pos, "
        "COUNT(*) OVER () AS fresh FROM n) "
        "SELECT v.customer_id AS customer_id, "
        f"CASE WHEN v.value IS NULL THEN NULL WHEN {held} "
        f"OR {used} + r.fresh <= {k} OR {len(named)} + r.pos < {k} "
        f"THEN v.value ELSE {other} END AS tag "
        "FROM v LEFT JOIN r ON r.value = v.value"
    )


def evaluate(
    con: duckdb.DuckDBPyConnection,
    dims: Sequence[Dimension],
    *,
    known: Mapping[str, Sequence[str]] | None,
) -> None:
    """Build `tiers`: metrics, current tiers and this run's tier per dimension, in order.

    `known` is None for a full run; a touched run passes the values each tag_from
    dimension's customers hold now (`bot.tiering.tag_values`): its fold is the population's.
    """
    pivot = "".join(
        f", max(tier) FILTER (WHERE dimension = {quote_string(d.name)}) AS {current_column(d.name)}"
        f", max(since_days) FILTER (WHERE dimension = {quote_string(d.name)})"
        f" AS {since_column(d.name)}"
        for d in dims
    )
    con.execute(f"CREATE TABLE curp AS SELECT customer_id{pivot} FROM cur GROUP BY customer_id")
    cols = "".join(f", curp.{current_column(d.name)}, curp.{since_column(d.name)}" for d in dims)
    con.execute(f"""
        CREATE TABLE {TIERS} AS SELECT metrics.*{cols}
        FROM metrics LEFT JOIN curp ON curp.customer_id = metrics.customer_id""")
    con.execute("DROP TABLE curp")
    # An attribute nobody has imported yet has no column: it is missing for everyone.
    have = {r[0] for r in con.execute(f"DESCRIBE {TIERS}").fetchall()}
    for name in sorted(set().union(*(d.names_used() for d in dims)) if dims else ()):
        if name.startswith(PROFILE_PREFIX) and name not in have:
            con.execute(f"ALTER TABLE {TIERS} ADD COLUMN {quote_ident(name)} VARCHAR")
    for dim in dims:
        col = tier_column(dim.name)
        con.execute(f"ALTER TABLE {TIERS} ADD COLUMN {col} VARCHAR")
        if isinstance(dim, TagFromDimension):
            if known is not None:
                tags = _touched_tag_from(dim, list(known.get(dim.name, ())))
            else:
                tags = compile_tag_from(dim, table=TIERS)
            con.execute(
                f"UPDATE {TIERS} SET {col} = s.tag FROM ({tags}) s"
                f" WHERE s.customer_id = {TIERS}.customer_id"
            )
            continue
        case = compile_dimension(
            dim, cur_tier=f"cur_tier.{dim.name}", cur_since_days=f"cur_since.{dim.name}"
        )
        con.execute(f"UPDATE {TIERS} SET {col} = {case}")


def diff(con: duckdb.DuckDBPyConnection, dims: Sequence[Dimension]) -> None:
    """Build `changes(customer_id, dimension, position, from_tier, to_tier, metrics)`."""
    parts = []
    for position, dim in enumerate(dims):
        used = sorted(dim.names_used())
        pairs = ", ".join(f"{quote_string(n)}, {name_sql(n)}" for n in used)
        metrics = f"CAST(json_object({pairs}) AS VARCHAR)" if used else "'{}'"
        parts.append(
            f"SELECT customer_id, {quote_string(dim.name)} AS dimension, {position} AS position,"
            f" {current_column(dim.name)} AS from_tier, {tier_column(dim.name)} AS to_tier,"
            f" {metrics} AS metrics FROM {TIERS}"
            f" WHERE {tier_column(dim.name)} IS DISTINCT FROM {current_column(dim.name)}"
        )
    body = (
        " UNION ALL ".join(parts)
        if parts
        else (
            "SELECT NULL::BIGINT AS customer_id, NULL::VARCHAR AS dimension, 0 AS position,"
            " NULL::VARCHAR AS from_tier, NULL::VARCHAR AS to_tier, NULL::VARCHAR AS metrics"
            " WHERE FALSE"
        )
    )
    con.execute(f"CREATE TABLE {CHANGES} AS {body}")


def moves(con: duckdb.DuckDBPyConnection) -> list[Move]:
    """Return the moves per dimension (config order), from → to, with their counts."""
    rows = con.execute(f"""
        SELECT dimension, from_tier, to_tier, count(*) FROM {CHANGES}
        GROUP BY position, dimension, from_tier, to_tier
        ORDER BY position, count(*) DESC, from_tier NULLS FIRST, to_tier NULLS FIRST""").fetchall()
    return [Move(r[0], r[1], r[2], int(r[3])) for r in rows]


def changed_customers(con: duckdb.DuckDBPyConnection) -> int:
    """Return how many customers changed tier in at least one dimension."""
    row = con.execute(f"SELECT count(DISTINCT customer_id) FROM {CHANGES}").fetchone()
    return int(row[0]) if row else 0


def relations_to_mark(
    con: duckdb.DuckDBPyConnection, source: Source, *, ids: list[int] | None
) -> int:
    """Return the active relations of customers whose tiers change (one mark_tag each).

    An upper bound of the push's calls: the tier diff skips relations whose tags in WeCom
    already match.
    """
    rows = scan(source, "follow_relations", "customer_id, status", "status = 'active'", ids)
    row = con.execute(f"""
        SELECT count(*) FROM {rows} AS r
        WHERE CAST(r.customer_id AS BIGINT) IN (SELECT customer_id FROM {CHANGES})""").fetchone()
    return int(row[0]) if row else 0


def tier_sizes(con: duckdb.DuckDBPyConnection, dims: Sequence[Dimension]) -> list[Move]:
    """Return every dimension's tier sizes after this run (as Moves with from_tier None)."""
    out: list[Move] = []
    for dim in dims:
        col = tier_column(dim.name)
        for tag, n in con.execute(
            f"SELECT {col}, count(*) FROM {TIERS} WHERE {col} IS NOT NULL"
            f" GROUP BY {col} ORDER BY count(*) DESC, {col}"
        ).fetchall():
            out.append(Move(dim.name, None, str(tag), int(n)))
    return out

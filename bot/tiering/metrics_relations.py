"""Relation and profile metrics: since when, through which channel, how many staff, gender,
and each imported profile attribute as a `profile.<name>` text column."""

from __future__ import annotations

from bot.rules.vocabulary import PROFILE_PREFIX
from bot.tiering.clock import Clock
from bot.tiering.source import Source, scan, timestamp_expr

GENDERS = {1: "男", 2: "女"}  # WeCom: 0 unknown, 1 male, 2 female


def stage_customers(source: Source, *, ids: list[int] | None) -> str:
    """Return SQL staging the customers to compute as `c(cid, gender)`."""
    rows = scan(source, "customers", "id, gender", "1 = 1", ids)
    return f"""
        CREATE TABLE c AS
        SELECT CAST(id AS BIGINT) AS cid, CAST(gender AS INTEGER) AS gender FROM {rows}"""


def stage_relations(source: Source, *, ids: list[int] | None, clock: Clock) -> str:
    """Return SQL staging relations as `r(cid, added, ago, active, channel)`."""
    rows = scan(
        source, "follow_relations", "customer_id, channel_id, status, added_at", "1 = 1", ids
    )
    return f"""
        CREATE TABLE r AS
        SELECT x.cid, x.added, {clock.days_ago("x.added")} AS ago, x.active, ch.name AS channel
        FROM (
            SELECT CAST(customer_id AS BIGINT) AS cid, CAST(channel_id AS BIGINT) AS channel_id,
                   CAST(status AS VARCHAR) = 'active' AS active,
                   {timestamp_expr(source, "added_at")} AS added
            FROM {rows}
        ) AS x
        LEFT JOIN (SELECT CAST(id AS BIGINT) AS id, CAST(name AS VARCHAR) AS name
                   FROM {scan(source, "channels", "id, name", "1 = 1", None, direct=True)}) AS ch ON ch.id = x.channel_id
        WHERE x.added IS NULL OR x.added <= TIMESTAMP '{clock.as_of_utc}'"""


# The channel is the one of the earliest relation that has one; relations added at the
# same instant (or without a time, last) are decided by channel name, not by row order.
RELATION_METRICS = """
    CREATE TABLE rm AS
    SELECT cid,
           max(ago) AS days_since_added,
           count(*) FILTER (WHERE active) AS staff_count,
           arg_min(channel, struct_pack(n := added IS NULL, a := added, c := channel))
             FILTER (WHERE channel IS NOT NULL) AS channel
    FROM r
    GROUP BY cid
"""


def stage_profiles(source: Source, *, ids: list[int] | None) -> str:
    """Return SQL staging one value per (customer, attribute) as `p(cid, name, value)`.

    A customer can hold the same attribute under two subjects (external_userid and
    unionid:...); the most recently updated wins, then the greater value.
    """
    rows = scan(
        source,
        "profile_attributes",
        "customer_id, name, value, updated_at",
        "customer_id IS NOT NULL",
        ids,
    )
    return f"""
        CREATE TABLE p AS
        SELECT cid, name, value FROM (
            SELECT CAST(customer_id AS BIGINT) AS cid, CAST(name AS VARCHAR) AS name,
                   CAST(value AS VARCHAR) AS value,
                   {timestamp_expr(source, "updated_at")} AS updated
            FROM {rows}
        )
        QUALIFY row_number() OVER (PARTITION BY cid, name ORDER BY updated DESC, value DESC) = 1"""


def quote_ident(name: str) -> str:
    """Return a double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """Return a single-quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def profile_metrics(names: list[str]) -> str:
    """Return SQL pivoting `p` into one `profile.<name>` column per attribute name."""
    cols = "".join(
        f", max(value) FILTER (WHERE name = {quote_literal(n)}) AS {quote_ident(PROFILE_PREFIX + n)}"
        for n in names
    )
    return f"CREATE TABLE pm AS SELECT cid{cols} FROM p GROUP BY cid"


COLUMNS: dict[str, str] = {
    "days_since_added": "rm.days_since_added",
    "channel": "rm.channel",
    "staff_count": "coalesce(rm.staff_count, 0)",
    "gender": "CASE c.gender "
    + " ".join(f"WHEN {k} THEN '{v}'" for k, v in GENDERS.items())
    + " ELSE '未知' END",
}

"""Interaction metrics: counts per window and kind, recency, and intent without purchase."""

from __future__ import annotations

import re

from bot.rules.vocabulary import INTERACTION_KINDS, METRICS
from bot.tiering.clock import Clock
from bot.tiering.source import Source, scan, timestamp_expr

# Kinds that show buying intent for intent_no_buy_30d.
INTENT_KINDS = ("view", "cart", "inquiry")
INTENT_DAYS = 30


def stage_events(source: Source, *, ids: list[int] | None, clock: Clock) -> str:
    """Return SQL staging interactions up to as_of as `e(cid, kind, ago, click_ts)`.

    Clicks keep their instant: the reach metrics look for one within days of a message.
    """
    rows = scan(
        source,
        "interaction_events",
        "customer_id, kind, occurred_at",
        "customer_id IS NOT NULL",
        ids,
    )
    return f"""
        CREATE TABLE e AS
        SELECT cid, kind, {clock.days_ago("ts")} AS ago,
               CASE WHEN kind = 'click' THEN ts END AS click_ts
        FROM (
            SELECT CAST(customer_id AS BIGINT) AS cid, CAST(kind AS VARCHAR) AS kind,
                   {timestamp_expr(source, "occurred_at")} AS ts
            FROM {rows}
        )
        WHERE ts <= TIMESTAMP '{clock.as_of_utc}'"""


def _counters() -> dict[str, str]:
    """Return the vocabulary's interaction counters as name -> aggregate SQL."""
    plural_to_kind = {plural: kind for kind, plural in INTERACTION_KINDS.items()}
    out: dict[str, str] = {}
    for metric in METRICS:
        match = re.fullmatch(r"([a-z]+)_(\d+)d", metric.name)
        if match is None:
            continue
        word, days = match.group(1), int(match.group(2))
        if word == "interactions":
            out[metric.name] = f"count(*) FILTER (WHERE ago < {days})"
        elif word in plural_to_kind:
            kind = plural_to_kind[word]
            out[metric.name] = f"count(*) FILTER (WHERE ago < {days} AND kind = '{kind}')"
    return out


COUNTERS = _counters()
_intent = ", ".join(f"'{k}'" for k in INTENT_KINDS)

EVENT_METRICS = f"""
    CREATE TABLE em AS
    SELECT cid,
           {", ".join(f"{sql} AS {name}" for name, sql in COUNTERS.items())},
           min(ago) AS days_since_last_interaction,
           count(*) FILTER (WHERE ago < {INTENT_DAYS} AND kind IN ({_intent})) AS intent_events
    FROM e
    GROUP BY cid
"""

# Output columns over `em` (and `om` for the purchase side of intent_no_buy_30d).
COLUMNS: dict[str, str] = {
    **{name: f"coalesce(em.{name}, 0)" for name in COUNTERS},
    "days_since_last_interaction": "em.days_since_last_interaction",
    "intent_no_buy_30d": "coalesce(em.intent_events, 0) > 0 AND coalesce(om.orders_30d, 0) = 0",
}

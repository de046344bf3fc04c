"""Reach metrics from 群发 deliveries: messages, reach rate and click rate over 90 days.

A delivery counts once WeCom has its 群发 (status created or a result after it), in the
treatment arm of a group_message run, by the local day it was created. The reach rate
divides the sent by the deliveries whose result is final (sent, not_friend, over_quota,
unconfirmed): a message still waiting for its member's confirmation does not count against
it yet. A delivery is clicked when a `click` interaction follows within CLICK_DAYS of its
sending (of its creation when it was never sent). Customers never messaged have none of
the three (missing); messaged only before the window, messages_90d is 0.
"""

from __future__ import annotations

from bot.states import DeliveryStatus
from bot.tiering.clock import Clock
from bot.tiering.source import Source, scan, timestamp_expr

WINDOW_DAYS = 90
CLICK_DAYS = 3
FINAL = (
    DeliveryStatus.SENT,
    DeliveryStatus.NOT_FRIEND,
    DeliveryStatus.OVER_QUOTA,
    DeliveryStatus.UNCONFIRMED,
)
ATTEMPTED = (DeliveryStatus.CREATED, *FINAL)


def _list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def stage_deliveries(source: Source, *, ids: list[int] | None, clock: Clock) -> str:
    """Return SQL staging attempted 群发 deliveries up to as_of as `d(cid, status, ref, ago)`."""
    rows = scan(
        source,
        "campaign_deliveries",
        "customer_id, run_id, status, created_at, sent_at",
        f"arm = 'treatment' AND status IN ({_list(ATTEMPTED)})",
        ids,
    )
    runs = scan(source, "campaign_runs", "id", "action = 'group_message'", None, direct=True)
    return f"""
        CREATE TABLE d AS
        SELECT x.cid, x.status, coalesce(x.sent, x.created) AS ref,
               {clock.days_ago("x.created")} AS ago
        FROM (
            SELECT CAST(customer_id AS BIGINT) AS cid, CAST(run_id AS BIGINT) AS run_id,
                   CAST(status AS VARCHAR) AS status,
                   {timestamp_expr(source, "created_at")} AS created,
                   {timestamp_expr(source, "sent_at")} AS sent
            FROM {rows}
        ) AS x
        JOIN (SELECT CAST(id AS BIGINT) AS id FROM {runs}) AS run ON run.id = x.run_id
        WHERE x.created <= TIMESTAMP '{clock.as_of_utc}'"""


# Over the staged interactions `e` (before they are dropped): messaged customers' clicks.
STAGE_CLICKS = """
    CREATE TABLE k AS
    SELECT cid, click_ts AS ts FROM e
    WHERE click_ts IS NOT NULL AND cid IN (SELECT cid FROM d)
"""

DELIVERY_METRICS = f"""
    CREATE TABLE dm AS
    SELECT cid,
           count(*) FILTER (WHERE ago < {WINDOW_DAYS}) AS messages,
           count(*) FILTER (WHERE ago < {WINDOW_DAYS} AND status IN ({_list(FINAL)})) AS final,
           count(*) FILTER (WHERE ago < {WINDOW_DAYS} AND status = 'sent') AS sent,
           count(*) FILTER (WHERE ago < {WINDOW_DAYS} AND clicked) AS clicked
    FROM (
        SELECT d.cid, d.status, d.ago,
               EXISTS (SELECT 1 FROM k WHERE k.cid = d.cid AND k.ts >= d.ref
                       AND k.ts < d.ref + INTERVAL {CLICK_DAYS} DAY) AS clicked
        FROM d
    )
    GROUP BY cid
"""

# Output columns over `dm` (no row: never messaged, every value missing).
COLUMNS: dict[str, str] = {
    "messages_90d": "dm.messages",
    "reach_rate_90d": "CAST(dm.sent AS DOUBLE) / nullif(dm.final, 0)",
    "click_rate_90d": "CAST(dm.clicked AS DOUBLE) / nullif(dm.messages, 0)",
}

"""Order metrics: spend, counts, recency, rhythm, categories, and the R/F/M scores.

Every statement reads the staged table `o` (paid orders up to as_of, one row each, with
`ago` = calendar days between the order's local day and as_of's local day) and writes
one table; the engine joins them.
"""

from __future__ import annotations

from bot.tiering.clock import Clock
from bot.tiering.source import Source, boolean_expr, scan, timestamp_expr

QUINTILES = 5


def stage_orders(source: Source, *, ids: list[int] | None, clock: Clock) -> str:
    """Return SQL staging paid orders up to as_of as `o(cid, fen, ts, ago, cat, np)`."""
    rows = scan(
        source,
        "orders",
        "customer_id, amount, paid_at, category, is_new_product",
        "status = 'paid' AND customer_id IS NOT NULL",
        ids,
    )
    ts = timestamp_expr(source, "paid_at")
    return f"""
        CREATE TABLE o AS
        SELECT cid, fen, ts, {clock.days_ago("ts")} AS ago, cat, np
        FROM (
            SELECT CAST(customer_id AS BIGINT) AS cid, CAST(amount AS BIGINT) AS fen, {ts} AS ts,
                   coalesce(CAST(category AS VARCHAR), '') AS cat,
                   {boolean_expr(source, "is_new_product")} AS np
            FROM {rows}
        )
        WHERE ts <= TIMESTAMP '{clock.as_of_utc}'"""


# Three passes over `o`, each projecting only what it needs, so a 10 M-order run stays
# within DuckDB's memory limit (a window materialises every column it carries).
#
# Gaps are between consecutive orders' local days; the order of same-day orders doesn't
# change any gap, so the median is the same whatever the row order. A category repeats
# when the customer paid for it strictly earlier (paid_at after the first): two orders at
# the same instant are both firsts. Orders without a category never repeat.
ORDER_METRICS = (
    """
    CREATE TABLE om_gap AS
    SELECT cid, CAST(median(gap) AS DOUBLE) AS ipt_median
    FROM (SELECT cid, lag(ago) OVER (PARTITION BY cid ORDER BY ago DESC) - ago AS gap FROM o)
    WHERE gap IS NOT NULL
    GROUP BY cid
    """,
    """
    CREATE TABLE om_rep AS
    WITH first AS (SELECT cid, cat, min(ts) AS first_ts FROM o WHERE cat <> '' GROUP BY cid, cat)
    SELECT o.cid, count(*) AS repeat_category_orders_180d
    FROM o JOIN first ON first.cid = o.cid AND first.cat = o.cat
    WHERE o.ago < 180 AND o.ts > first.first_ts
    GROUP BY o.cid
    """,
    """
    CREATE TABLE om AS
    SELECT a.*, g.ipt_median, r.repeat_category_orders_180d
    FROM (
        SELECT cid,
               sum(fen) FILTER (WHERE ago < 365) AS fen_365d,
               count(*) FILTER (WHERE ago < 365) AS orders_365d,
               max(fen) FILTER (WHERE ago < 365) AS max_fen_365d,
               sum(fen) AS fen_total,
               count(*) AS orders_total,
               min(ago) AS days_since_last_order,
               max(ago) AS days_since_first_order,
               count(*) FILTER (WHERE ago < 180) AS orders_180d,
               count(*) FILTER (WHERE ago < 180 AND np) AS new_orders_180d,
               count(*) FILTER (WHERE ago < 30) AS orders_30d
        FROM o
        GROUP BY cid
    ) AS a
    LEFT JOIN om_gap AS g ON g.cid = a.cid
    LEFT JOIN om_rep AS r ON r.cid = a.cid
    """,
    "DROP TABLE om_gap",
    "DROP TABLE om_rep",
)

# The category with the most spend in 365 d; equal spend goes to the alphabetically first.
TOP_CATEGORY = """
    CREATE TABLE topcat AS
    SELECT cid, cat AS top_category_365d
    FROM (SELECT cid, cat, sum(fen) AS s FROM o WHERE ago < 365 AND cat <> '' GROUP BY cid, cat)
    QUALIFY row_number() OVER (PARTITION BY cid ORDER BY s DESC, cat) = 1
"""

# The window's buyers with the values their ranks depend on (clv from `pred`,
# bot.tiering.metrics_predictive).
BUYERS = """
    SELECT om.cid, om.fen_365d, om.days_since_last_order AS last_ago, pred.clv_365d AS clv
    FROM om LEFT JOIN pred ON pred.cid = om.cid WHERE om.orders_365d > 0
"""


def ranks(population: str, *, keep: str | None) -> str:
    """Return SQL ranking every buyer of `population` by spend and by recency.

    k_m is the number of buyers whose spend is <= the customer's, k_r the number whose last
    order is as old or older, k_c the number whose clv_365d is <= theirs among the n_c that
    have one (nulls sort last, so they never count): all count ties in full, so equal values get equal k and the
    result cannot depend on row order. `keep` restricts the output (not the population).
    A full run's; a touched run's or an explanation's customers get the same counts from
    `rank_index.RankIndex`.
    """
    where = f"WHERE cid IN ({keep})" if keep else ""
    return f"""
        CREATE TABLE ranks AS
        SELECT * FROM (
            SELECT cid,
                   count(*) OVER (ORDER BY fen_365d) AS k_m,
                   count(*) OVER (ORDER BY last_ago DESC) AS k_r,
                   count(clv) OVER (ORDER BY clv ASC NULLS LAST) AS k_c,
                   count(clv) OVER () AS n_c,
                   count(*) OVER () AS n
            FROM ({population})
        ) {where}
    """


def score(k: str) -> str:
    """Return SQL for a 1–5 quintile score from a tie-inclusive count: ceil(5 k / n)."""
    # Integer arithmetic: ceil(5k/n) exactly, no floating-point edge at a cut.
    return f"CAST(({QUINTILES} * {k} + ranks.n - 1) // ranks.n AS INTEGER)"


F_SCORE = """CASE WHEN om.orders_365d >= 10 THEN 5 WHEN om.orders_365d >= 5 THEN 4
                  WHEN om.orders_365d >= 3 THEN 3 WHEN om.orders_365d = 2 THEN 2
                  WHEN om.orders_365d = 1 THEN 1 END"""

# Output columns over `om`, `topcat` and `ranks`, in vocabulary order.
COLUMNS: dict[str, str] = {
    "spend_365d": "om.fen_365d / 100.0",
    "orders_365d": "coalesce(om.orders_365d, 0)",
    "aov_365d": "om.fen_365d / 100.0 / nullif(om.orders_365d, 0)",
    "max_order_365d": "om.max_fen_365d / 100.0",
    "spend_total": "om.fen_total / 100.0",
    "orders_total": "coalesce(om.orders_total, 0)",
    "days_since_last_order": "om.days_since_last_order",
    "days_since_first_order": "om.days_since_first_order",
    "ipt_median": "om.ipt_median",
    "overdue_ratio": "om.days_since_last_order / nullif(om.ipt_median, 0)",
    "new_product_share_180d": "om.new_orders_180d / nullif(om.orders_180d, 0)",
    "repeat_category_orders_180d": "coalesce(om.repeat_category_orders_180d, 0)",
    "spend_percentile_365d": "100.0 * ranks.k_m / ranks.n",
    "top_category_365d": "topcat.top_category_365d",
    "r_score": score("ranks.k_r"),
    "f_score": F_SCORE,
    "m_score": score("ranks.k_m"),
}

"""Generate the re-tier bench's data in DuckDB and load it into SQLite or PostgreSQL.

The data is made once, set-based and deterministic (hash-based pseudo-randomness, so a
rerun makes the same rows), as native DuckDB tables named like the bot's tables; the
same rows are then copied into a migrated SQLite file or PostgreSQL schema, and kept in
DuckDB for the native comparison.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import numpy as np
import numpy.typing as npt

from bench.btyd import alpha_for_repeats, bgnbd_repeat_times
from bot.tiering.source import load_extension

# Bumped whenever the generated rows change: the data's names carry it (bench/retier_common),
# so a kept copy from another version is never mixed with this one's figures.
# 2: repeat orders from a BG/NBD process (before: spread with no dropout, so the nightly
#    BG/NBD fit stopped on the no-dropout bound).
DATA_VERSION = 2
DAYS = 1095  # orders span three years up to as_of
# Repeat purchases per day ~ Gamma(r, α) while active, dropout after each ~ Beta(a, b):
# very uneven buying (r small: about half the buyers never come back, a few buy weekly),
# a mean dropout chance of 1 in 11 per repeat; α is solved for the requested order count.
BGNBD_R, BGNBD_A, BGNBD_B = 0.1, 0.5, 5.0
SEED = 20261201

CATEGORIES = (
    "服饰",
    "美妆",
    "护肤",
    "母婴",
    "食品",
    "酒水",
    "茶叶",
    "家居",
    "厨具",
    "数码",
    "家电",
    "运动",
    "户外",
    "图书",
    "玩具",
    "宠物",
    "珠宝",
    "鞋靴",
    "箱包",
    "保健",
)
REGIONS = ("华东", "华南", "华北", "华中", "西南", "西北", "东北")
LEVELS = ("普通", "银卡", "金卡", "钻石")


def _u(salt: int, col: str = "i") -> str:
    """Return SQL for a deterministic uniform number in [0, 1) from a row key and a salt."""
    return f"(hash({col}, {salt}) % 1000000007) / 1000000007.0"


def _orders(buyers: int, orders: int) -> dict[str, npt.NDArray[np.int64]]:
    """Return the orders' ids, customer ids and seconds before as_of, `orders` rows in all.

    Buyer k (ids 1..buyers) first buys uniformly over the three years (one order each, as
    far as `orders` goes); the remaining orders are repeat purchases drawn from BG/NBD
    over each buyer's time since their first, with α set so the expected count matches,
    then thinned at random to exactly the count asked for.
    """
    rng = np.random.default_rng(SEED)
    first = min(orders, buyers)
    first_back = rng.random(buyers) * DAYS * 86400.0  # seconds before as_of
    extra = orders - first
    cid = np.arange(1, first + 1, dtype=np.int64)
    back = first_back[:first]
    if extra > 0:
        age = first_back / 86400.0
        alpha = alpha_for_repeats(BGNBD_R, BGNBD_A, BGNBD_B, age, extra / buyers * 1.02)
        for attempt in range(20):
            who, when = bgnbd_repeat_times(
                BGNBD_R, alpha, BGNBD_A, BGNBD_B, age, seed=SEED + 1 + attempt
            )
            if who.size >= extra:
                break
            alpha *= 0.9  # drew fewer than asked: buy a little faster and draw again
        else:
            raise RuntimeError(f"BG/NBD drew {who.size} repeat orders of {extra}")
        keep = np.sort(rng.choice(who.size, size=extra, replace=False))
        who, when = who[keep], when[keep]
        cid = np.concatenate([cid, who + 1])
        back = np.concatenate([back, first_back[who] - when * 86400.0])
    return {
        "i": np.arange(1, cid.size + 1, dtype=np.int64),
        "cid": cid,
        "back_s": np.floor(back).astype(np.int64),
    }


def generate(
    con: duckdb.DuckDBPyConnection, *, customers: int, orders: int, events: int, as_of: datetime
) -> None:
    """Create staff, channels, customers, relations, orders, events and profile tables."""
    now = as_of.replace(tzinfo=None).isoformat(sep=" ")
    ts = f"TIMESTAMP '{now}'"
    cats = "[" + ", ".join(f"'{c}'" for c in CATEGORIES) + "]"
    regions = "[" + ", ".join(f"'{c}'" for c in REGIONS) + "]"
    levels = "[" + ", ".join(f"'{c}'" for c in LEVELS) + "]"
    n_staff = 200
    n_channels = 20
    buyers = max(int(customers * 0.6), 1)
    con.execute(f"""
        CREATE OR REPLACE TABLE staff AS
        SELECT i AS id, 'staff' || i AS userid, '员工' || i AS name, true AS active,
               {ts} AS created_at, {ts} AS updated_at
        FROM range(1, {n_staff + 1}) t(i)""")
    con.execute(f"""
        CREATE OR REPLACE TABLE channels AS
        SELECT i AS id, '渠道' || i AS name, 'ch' || i AS state, NULL::VARCHAR AS config_id,
               '' AS qr_code, '' AS welcome_text, '[]' AS welcome_attachments,
               NULL::INTEGER AS daily_cap, true AS skip_verify, 'cli' AS source, 0 AS scans,
               {ts} AS created_at, {ts} AS updated_at
        FROM range(1, {n_channels + 1}) t(i)""")
    con.execute(f"""
        CREATE OR REPLACE TABLE customers AS
        SELECT i AS id, 'wm' || i AS external_userid,
               CASE WHEN {_u(1)} < 0.5 THEN 'un' || i END AS unionid,
               '客户' || i AS name, 1 AS type, CAST(floor({_u(2)} * 3) AS INTEGER) AS gender,
               '' AS avatar, '' AS corp_name, {ts} AS created_at, {ts} AS updated_at
        FROM range(1, {customers + 1}) t(i)""")
    # 85 % one staff, 10 % two, 5 % three; distinct staff per customer by construction.
    con.execute(f"""
        CREATE OR REPLACE TABLE follow_relations AS
        WITH c AS (
            SELECT i, CASE WHEN {_u(3)} < 0.85 THEN 1 WHEN {_u(3)} < 0.95 THEN 2 ELSE 3 END AS k
            FROM range(1, {customers + 1}) t(i)
        ), r AS (SELECT i, j FROM c, range(k) t(j))
        SELECT row_number() OVER (ORDER BY i, j) AS id,
               1 + (i * 7 + j * 13) % {n_staff} AS staff_id, i AS customer_id,
               CASE WHEN {_u(4, "i * 3 + j")} < 0.8
                    THEN 1 + CAST(floor({_u(5, "i * 3 + j")} * {n_channels}) AS BIGINT) END
                 AS channel_id,
               '' AS state, '' AS remark, 0 AS add_way,
               CASE WHEN {_u(6, "i * 3 + j")} < 0.95 THEN 'active' ELSE 'lost' END AS status,
               {ts} - to_seconds(CAST(floor({_u(7, "i * 3 + j")} * 86400 * 1095) AS BIGINT))
                 AS added_at,
               NULL::TIMESTAMP AS lost_at, NULL::VARCHAR AS lost_reason,
               NULL::VARCHAR AS transfer_fail_reason, {ts} AS created_at, {ts} AS updated_at
        FROM r""")
    # Every buyer orders once; the repeat orders come from a BG/NBD process (below).
    orders_arrays = _orders(buyers, orders)
    con.register("orders_arrays", orders_arrays)
    con.execute(f"""
        CREATE OR REPLACE TABLE orders AS
        WITH z AS (
            SELECT i, cid, back_s,
                   sqrt(-2 * ln(1 - {_u(11)})) * cos(2 * pi() * {_u(12)}) AS normal
            FROM orders_arrays
        )
        SELECT i AS id, 'o' || i AS order_id, cid AS customer_id, 'wm' || cid AS external_userid,
               NULL::VARCHAR AS unionid,
               greatest(CAST(round(exp(ln(150) + 1.0 * normal) * 100) AS BIGINT), 100) AS amount,
               {ts} - to_seconds(back_s) AS paid_at,
               CASE WHEN {_u(14)} < 0.05 THEN 'refunded' ELSE 'paid' END AS status,
               {cats}[1 + CAST(floor(pow({_u(15)}, 2) * {len(CATEGORIES)}) AS INTEGER)] AS category,
               {_u(16)} < 0.15 AS is_new_product, {ts} AS created_at, {ts} AS updated_at
        FROM z""")
    con.unregister("orders_arrays")
    con.execute(f"""
        CREATE OR REPLACE TABLE interaction_events AS
        WITH e AS (
            SELECT i, 1 + CAST(floor({_u(20)} * CASE WHEN {_u(19)} < 0.8
                                                     THEN {max(int(customers * 0.7), 1)}
                                                     ELSE {max(customers // 20, 1)} END) AS BIGINT)
                     AS cid, {_u(21)} AS k
            FROM range(1, {events + 1}) t(i)
        )
        SELECT i AS id, 'e' || i AS event_id, cid AS customer_id, 'wm' || cid AS external_userid,
               NULL::VARCHAR AS unionid,
               CASE WHEN k < 0.5 THEN 'view' WHEN k < 0.75 THEN 'click' WHEN k < 0.87 THEN 'cart'
                    WHEN k < 0.95 THEN 'inquiry' ELSE 'other' END AS kind,
               {ts} - to_seconds(CAST(floor({_u(22)} * 86400 * 180) AS BIGINT)) AS occurred_at,
               {ts} AS created_at, {ts} AS updated_at
        FROM e""")
    con.execute(f"""
        CREATE OR REPLACE TABLE profile_attributes AS
        WITH p AS (
            SELECT i, 'region' AS name,
                   {regions}[1 + CAST(floor({_u(30)} * {len(REGIONS)}) AS INTEGER)] AS value
            FROM range(1, {customers + 1}) t(i) WHERE {_u(31)} < 0.8
            UNION ALL
            SELECT i, 'member_level',
                   {levels}[1 + CAST(floor(pow({_u(32)}, 2) * {len(LEVELS)}) AS INTEGER)]
            FROM range(1, {customers + 1}) t(i) WHERE {_u(33)} < 0.5
        )
        SELECT row_number() OVER (ORDER BY i, name) AS id, 'wm' || i AS subject, i AS customer_id,
               'wm' || i AS external_userid, NULL::VARCHAR AS unionid, name, value,
               {ts} AS updated_at
        FROM p""")

    # No outreach in the bench data: empty tables (the columns the reach metrics read).
    con.execute("CREATE OR REPLACE TABLE campaign_runs (id BIGINT, action VARCHAR)")
    con.execute("""
        CREATE OR REPLACE TABLE campaign_deliveries (
            customer_id BIGINT, run_id BIGINT, arm VARCHAR, status VARCHAR,
            created_at TIMESTAMP, sent_at TIMESTAMP)""")
    # No customer groups either (the columns the group metrics read).
    con.execute(
        "CREATE OR REPLACE TABLE group_chats (id BIGINT, name VARCHAR, dismissed_at TIMESTAMP)"
    )
    con.execute("""
        CREATE OR REPLACE TABLE group_members (
            group_chat_id BIGINT, member_userid VARCHAR, member_type INTEGER,
            join_scene INTEGER, channel_id BIGINT, joined_at TIMESTAMP, left_at TIMESTAMP)""")


# Parents before children, so foreign keys hold while loading.
TABLES = (
    "staff",
    "channels",
    "customers",
    "follow_relations",
    "orders",
    "interaction_events",
    "profile_attributes",
)
TIMESTAMPS = {"created_at", "updated_at", "added_at", "lost_at", "paid_at", "occurred_at"}


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]


def load_sqlite(con: duckdb.DuckDBPyConnection, path: str) -> None:
    """Copy the generated tables into a migrated SQLite file, timestamps as SQLAlchemy writes them."""
    load_extension(con, "sqlite_scanner")
    con.execute(f"ATTACH '{path}' AS target (TYPE sqlite)")
    try:
        for table in TABLES:
            cols = _columns(con, table)
            select = ", ".join(
                f"strftime({c}, '%Y-%m-%d %H:%M:%S.%f') AS {c}" if c in TIMESTAMPS else c
                for c in cols
            )
            con.execute(
                f"INSERT INTO target.{table} ({', '.join(cols)}) SELECT {select} FROM {table}"
            )
    finally:
        con.execute("DETACH target")


def load_postgres(con: duckdb.DuckDBPyConnection, dsn: str, schema: str) -> None:
    """Copy the generated tables into a migrated PostgreSQL schema (COPY under the hood)."""
    load_extension(con, "postgres_scanner")
    con.execute(f"ATTACH '{dsn}' AS target (TYPE postgres, SCHEMA '{schema}')")
    try:
        for table in TABLES:
            cols = _columns(con, table)
            select = ", ".join(
                f"timezone('UTC', {c}) AS {c}" if c in TIMESTAMPS else c for c in cols
            )
            if table == "channels":
                select = select.replace("welcome_attachments", "welcome_attachments::JSON")
            con.execute(
                f'INSERT INTO target."{schema}".{table} ({", ".join(cols)}) SELECT {select} FROM {table}'
            )
        # The bot's sequences must move past the copied ids, as after a real import.
    finally:
        con.execute("DETACH target")

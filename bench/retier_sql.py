"""Generate the re-tier bench's data inside PostgreSQL: INSERT … SELECT over generate_series.

The same tables and distributions as bench/retier_data.py (data version 2), drawn in SQL so
that 10 M customers need no copy through DuckDB or the application (the 1 M load through
them took 10–35 minutes). The schema is migrated as the bot does, its bulk tables' keys,
indexes and foreign keys are dropped, the rows inserted, then keys and indexes rebuilt,
foreign keys validated, the tables vacuumed and analyzed, the sequences moved past the ids.

Randomness is hash-based (`hashint8extended(key, salt)`), so a rerun makes the same rows
and every statement may run in any order or in parallel. Repeat orders follow the same
BG/NBD process as bench/btyd.py, drawn per buyer without a loop over purchases: the count
is min(N, K) for N ~ Poisson(λ·age) purchases while alive and K ~ Geometric(p) purchases
until dropout; with N ≤ K the times are N uniforms over the age, else the K-th of N events
falls at age·Beta(K, N−K+1) and the K−1 before it are uniform below it. α is solved in
Python as retier_data does, then the drawn repeats are thinned to exactly the count asked
for by an affine permutation of their running index (which also gives them dense ids).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime

import numpy as np
import psycopg

from bench.btyd import alpha_for_repeats
from bench.retier_data import (
    BGNBD_A,
    BGNBD_B,
    BGNBD_R,
    CATEGORIES,
    DAYS,
    LEVELS,
    REGIONS,
)

# Bumped whenever the SQL-drawn rows change (the schema's name carries it).
SQL_VERSION = 1
# The tables the generator fills, parents first; their keys, indexes and the foreign keys
# touching them are dropped for the load and rebuilt after it.
BULK = (
    "staff",
    "channels",
    "customers",
    "follow_relations",
    "orders",
    "interaction_events",
    "profile_attributes",
)
CHUNK = 2_000_000  # rows per INSERT statement: progress lines, bounded transactions

# Uniform in (0, 1) from 53 bits of a 64-bit hash of (key, salt).
_FUNCTIONS = r"""
CREATE FUNCTION bench_u(key bigint, salt bigint) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT ((hashint8extended(key, salt) & 9007199254740991)::float8 + 0.5) / 9007199254740992.0 $$;

-- Gamma(shape, 1): Marsaglia-Tsang; shape < 1 boosted by U^(1/shape).
CREATE FUNCTION bench_gamma(shape float8, key bigint, salt bigint) RETURNS float8
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    k float8 := CASE WHEN shape < 1 THEN shape + 1 ELSE shape END;
    d float8 := k - 1.0 / 3;
    c float8 := 1 / sqrt(9 * d);
    x float8; v float8; u float8; s bigint := salt * 64;
BEGIN
    LOOP
        x := sqrt(-2 * ln(bench_u(key, s))) * cos(2 * pi() * bench_u(key, s + 1));
        v := 1 + c * x;
        u := bench_u(key, s + 2);
        s := s + 3;
        IF v > 0 THEN
            v := v * v * v;
            IF ln(u) < 0.5 * x * x + d - d * v + d * ln(v) THEN
                IF shape < 1 THEN
                    RETURN d * v * power(bench_u(key, salt * 64 - 1), 1 / shape);
                END IF;
                RETURN d * v;
            END IF;
        END IF;
    END LOOP;
END $$;

-- Poisson(mu): inverse transform below 50, the normal approximation above.
CREATE FUNCTION bench_poisson(mu float8, key bigint, salt bigint) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    u float8 := bench_u(key, salt);
    p float8; f float8; n bigint := 0;
BEGIN
    IF mu >= 50 THEN
        RETURN greatest(0, round(mu + sqrt(mu) * sqrt(-2 * ln(u))
                                 * cos(2 * pi() * bench_u(key, salt + 1))));
    END IF;
    p := exp(-mu);
    f := p;
    WHILE u > f AND n < 1000 LOOP
        n := n + 1;
        p := p * mu / n;
        f := f + p;
    END LOOP;
    RETURN n;
END $$;
"""


def schema_name(customers: int, orders: int, events: int) -> str:
    """The generated data's schema: distinct from the DuckDB-loaded `bench_retier_d2_…`."""
    from bench.retier_data import DATA_VERSION

    return f"bench_retier_sql{SQL_VERSION}_d{DATA_VERSION}_{customers}c_{orders}o_{events}e"


def _u(salt: int, key: str = "i") -> str:
    return f"bench_u({key}, {salt})"


def _arr(values: tuple[str, ...]) -> str:
    return "ARRAY[" + ", ".join(f"'{v}'" for v in values) + "]"


def _alpha(buyers: int, extra: int) -> float:
    """α for the repeat count asked for, as retier_data solves it (ages uniform over DAYS)."""
    grid = (np.arange(4000) + 0.5) / 4000 * DAYS
    return alpha_for_repeats(BGNBD_R, BGNBD_A, BGNBD_B, grid, extra / buyers * 1.02)


def _coprime_near(n: int, x: float) -> int:
    a = max(int(x), 1)
    while math.gcd(a, n) != 1:
        a += 1
    return a


class _Run:
    def __init__(self, conn: psycopg.Connection, log: Callable[[str], None]) -> None:
        self.conn, self.log = conn, log
        self.timings: dict[str, float] = {}

    def sql(self, statement: str, params: tuple[object, ...] | None = None) -> None:
        self.conn.execute(statement, params)

    def step(self, name: str, statements: list[str], key: str | None = None) -> None:
        """Run `statements`; their time is added up under `key` (a chunk's kind)."""
        t0 = time.perf_counter()
        for s in statements:
            self.sql(s)
        took = time.perf_counter() - t0
        key = key or name
        self.timings[key] = round(self.timings.get(key, 0.0) + took, 1)
        self.log(f"{name:<34} {took:8.1f} s")

    def scalar(self, statement: str) -> object:
        row = self.conn.execute(statement).fetchone()
        assert row is not None
        return row[0]


def _chunks(total: int, size: int = CHUNK) -> list[tuple[int, int]]:
    return [(lo, min(lo + size - 1, total)) for lo in range(1, total + 1, size)]


def _save_ddl(run: _Run, schema: str) -> tuple[list[str], list[str], list[str]]:
    """Drop the bulk tables' keys, indexes and the foreign keys touching them.

    Returns the statements that put them back: keys, indexes, then foreign keys.
    """
    bulk = ", ".join(f"'{schema}.{t}'::regclass" for t in BULK)
    fks = run.conn.execute(
        f"""SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
            FROM pg_constraint WHERE contype = 'f'
             AND (conrelid IN ({bulk}) OR confrelid IN ({bulk}))
            ORDER BY conrelid::regclass::text, conname"""
    ).fetchall()
    keys = run.conn.execute(
        f"""SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
            FROM pg_constraint WHERE contype IN ('p', 'u') AND conrelid IN ({bulk})
            ORDER BY conrelid::regclass::text, contype, conname"""
    ).fetchall()
    indexes = run.conn.execute(
        f"""SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
            FROM pg_index i WHERE i.indrelid IN ({bulk})
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
            ORDER BY 1"""
    ).fetchall()
    for table, name, _ in fks:
        run.sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for table, name, _ in keys:
        run.sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        run.sql(f"DROP INDEX {name}")
    return (
        [f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' for t, n, d in keys],
        [d for _, d in indexes],
        [f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' for t, n, d in fks],
    )


def generate(
    dsn: str,
    schema: str,
    *,
    customers: int,
    orders: int,
    events: int,
    as_of: datetime,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Fill the migrated, empty `schema` with the bench's data; return each step's seconds."""
    if customers < 1 or orders < 0 or events < 0:
        raise ValueError("customers must be ≥ 1, orders and events ≥ 0")
    ts = f"TIMESTAMPTZ '{as_of.isoformat(sep=' ')}'"
    n_staff, n_channels = 200, 20
    buyers = max(int(customers * 0.6), 1)
    first = min(orders, buyers)
    extra = orders - first
    with psycopg.connect(dsn, autocommit=True) as conn:
        run = _Run(conn, log)
        for setting in (
            f'SET search_path TO "{schema}"',
            "SET TimeZone TO 'UTC'",
            "SET synchronous_commit TO off",
            "SET work_mem TO '256MB'",
            "SET maintenance_work_mem TO '1GB'",
        ):
            run.sql(setting)
        run.step("functions", [_FUNCTIONS])
        keys, indexes, fks = _save_ddl(run, schema)
        run.step(
            "staff, channels",
            [
                f"""INSERT INTO staff (id, userid, name, active, created_at, updated_at)
                    SELECT i, 'staff' || i, '员工' || i, true, {ts}, {ts}
                    FROM generate_series(1, {n_staff}) i""",
                f"""INSERT INTO channels (id, name, state, config_id, qr_code, welcome_text,
                        welcome_attachments, daily_cap, skip_verify, source, scans,
                        created_at, updated_at)
                    SELECT i, '渠道' || i, 'ch' || i, NULL, '', '', '[]', NULL, true, 'cli', 0,
                           {ts}, {ts}
                    FROM generate_series(1, {n_channels}) i""",
            ],
        )
        for lo, hi in _chunks(customers):
            run.step(
                f"customers {hi:,}",
                [
                    f"""INSERT INTO customers (id, external_userid, unionid, name, type, gender,
                            avatar, corp_name, created_at, updated_at)
                        SELECT i, 'wm' || i, CASE WHEN {_u(1)} < 0.5 THEN 'un' || i END,
                               '客户' || i, 1, floor({_u(2)} * 3)::int, '', '', {ts}, {ts}
                        FROM generate_series({lo}, {hi}) i""",
                    # 85 % one staff, 10 % two, 5 % three; distinct staff by construction.
                    # Ids 3(i-1)+j+1: gaps, as a sequence leaves them, and no sort.
                    f"""INSERT INTO follow_relations (id, staff_id, customer_id, channel_id,
                            state, remark, add_way, status, added_at, lost_at, lost_reason,
                            transfer_fail_reason, created_at, updated_at)
                        SELECT 3 * (i - 1) + j + 1, 1 + (i * 7 + j * 13) % {n_staff}, i,
                               CASE WHEN {_u(4, "3 * i + j")} < 0.8
                                    THEN 1 + floor({_u(5, "3 * i + j")} * {n_channels})::bigint
                               END,
                               '', '', 0,
                               CASE WHEN {_u(6, "3 * i + j")} < 0.95 THEN 'active' ELSE 'lost' END,
                               {ts} - make_interval(secs =>
                                   floor({_u(7, "3 * i + j")} * 86400 * {DAYS})),
                               NULL, NULL, NULL, {ts}, {ts}
                        FROM generate_series({lo}, {hi}) i,
                             generate_series(0, CASE WHEN {_u(3)} < 0.85 THEN 0
                                                     WHEN {_u(3)} < 0.95 THEN 1 ELSE 2 END) j""",
                    f"""INSERT INTO profile_attributes (id, subject, customer_id, external_userid,
                            unionid, name, value, updated_at)
                        SELECT 2 * (i - 1) + 1, 'wm' || i, i, 'wm' || i, NULL, 'region',
                               ({_arr(REGIONS)})[1 + floor({_u(30)} * {len(REGIONS)})::int],
                               {ts}
                        FROM generate_series({lo}, {hi}) i WHERE {_u(31)} < 0.8
                        UNION ALL
                        SELECT 2 * (i - 1) + 2, 'wm' || i, i, 'wm' || i, NULL, 'member_level',
                               ({_arr(LEVELS)})[1 + floor(power({_u(32)}, 2) * {len(LEVELS)})::int],
                               {ts}
                        FROM generate_series({lo}, {hi}) i WHERE {_u(33)} < 0.5""",
                ],
                "customers, relations, attributes",
            )
        hot, all_ = max(int(customers * 0.7), 1), max(customers // 20, 1)
        for lo, hi in _chunks(events):
            run.step(
                f"events {hi:,}",
                [
                    f"""INSERT INTO interaction_events (id, event_id, customer_id,
                            external_userid, unionid, kind, occurred_at, created_at, updated_at)
                        SELECT i, 'e' || i, cid, 'wm' || cid, NULL,
                               CASE WHEN k < 0.5 THEN 'view' WHEN k < 0.75 THEN 'click'
                                    WHEN k < 0.87 THEN 'cart' WHEN k < 0.95 THEN 'inquiry'
                                    ELSE 'other' END,
                               {ts} - make_interval(secs => floor({_u(22)} * 86400 * 180)),
                               {ts}, {ts}
                        FROM (SELECT i, {_u(21)} AS k,
                                     1 + floor({_u(20)} * CASE WHEN {_u(19)} < 0.8 THEN {hot}
                                                               ELSE {all_} END)::bigint AS cid
                              FROM generate_series({lo}, {hi}) i) e""",
                ],
                "events",
            )
        _orders(run, ts, buyers=buyers, first=first, extra=extra)
        run.step("keys", keys)
        run.step("indexes", indexes)
        run.step("foreign keys", fks)
        for table in BULK:
            run.sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
            )
        run.step("vacuum analyze", [f"VACUUM (ANALYZE) {t}" for t in BULK])
        run.step(
            "drop helpers",
            [
                "DROP TABLE IF EXISTS bench_buyers",
                "DROP FUNCTION bench_poisson, bench_gamma, bench_u",
                "CREATE TABLE bench_loaded (x int)",
            ],
        )
        return run.timings


def _orders(run: _Run, ts: str, *, buyers: int, first: int, extra: int) -> None:
    """Every buyer's first order (ids 1..first), then `extra` repeat orders from BG/NBD."""
    order_cols = """INSERT INTO orders (id, order_id, customer_id, external_userid, unionid,
                        amount, paid_at, status, category, is_new_product, created_at,
                        updated_at)"""
    order_select = f"""SELECT i, 'o' || i, cid, 'wm' || cid, NULL,
               greatest(round(exp(ln(150) + sqrt(-2 * ln({_u(11)}))
                                            * cos(2 * pi() * {_u(12)})) * 100)::bigint, 100),
               {ts} - make_interval(secs => back_s),
               CASE WHEN {_u(14)} < 0.05 THEN 'refunded' ELSE 'paid' END,
               ({_arr(CATEGORIES)})[1 + floor(power({_u(15)}, 2) * {len(CATEGORIES)})::int],
               {_u(16)} < 0.15, {ts}, {ts}"""
    # A buyer's first order falls uniformly over the three years: age = its time before as_of.
    age = f"{_u(40, 'cid')} * {DAYS}"
    for lo, hi in _chunks(first):
        run.step(
            f"first orders {hi:,}",
            [
                f"""{order_cols} {order_select}
                    FROM (SELECT cid AS i, cid, floor({age} * 86400) AS back_s
                          FROM generate_series({lo}, {hi}) cid) z"""
            ],
            "first orders",
        )
    if extra <= 0:
        return
    alpha = _alpha(buyers, extra)
    for attempt in range(20):
        # Per buyer: λ ~ Gamma(r, rate α) per day, p ~ Beta(a, b), N ~ Poisson(λ·age)
        # purchases while alive, K ~ Geometric(p) purchases until dropout; m = min(N, K)
        # repeats; tau = the time of the last one when dropout cut them short, else the age.
        salt = 100 * (attempt + 1)
        run.step(
            f"buyers (attempt {attempt + 1})",
            [
                "DROP TABLE IF EXISTS bench_buyers",
                # OFFSET 0 keeps each level a subquery of its own: flattened, every
                # reference to a drawn column would call its function again.
                f"""CREATE UNLOGGED TABLE bench_buyers AS
                    SELECT cid, age, m, tau, cut,
                           (sum(m) OVER (ORDER BY cid) - m)::bigint AS off
                    FROM (
                        SELECT cid, age, least(n, k) AS m, k < n AS cut,
                               CASE WHEN k < n THEN age * g1 / (g1 + g2) ELSE age END AS tau
                        FROM (
                            SELECT cid, age, n, k,
                                   CASE WHEN k < n
                                        THEN bench_gamma(k, cid, {salt + 5}) END AS g1,
                                   CASE WHEN k < n
                                        THEN bench_gamma(n - k + 1, cid, {salt + 6}) END AS g2
                            FROM (
                                SELECT cid, age, bench_poisson(lam * age, cid, {salt + 3}) AS n,
                                       least(ceil(ln(bench_u(cid, {salt + 9}))
                                                  / CASE WHEN ga / (ga + gb) < 1e-9
                                                         THEN -ga / (ga + gb)
                                                         ELSE ln(1 - ga / (ga + gb)) END),
                                             1e12)::bigint AS k
                                FROM (
                                    SELECT cid, {age} AS age,
                                           bench_gamma({BGNBD_R}, cid, {salt}) / {alpha} AS lam,
                                           bench_gamma({BGNBD_A}, cid, {salt + 1}) AS ga,
                                           bench_gamma({BGNBD_B}, cid, {salt + 2}) AS gb
                                    FROM generate_series(1, {buyers}) cid OFFSET 0
                                ) b OFFSET 0
                            ) nk OFFSET 0
                        ) gk
                    ) mm WHERE m > 0""",
            ],
            "buyers (BG/NBD draws)",
        )
        drawn = int(run.scalar("SELECT coalesce(sum(m), 0) FROM bench_buyers"))  # type: ignore[call-overload]
        run.log(f"repeat orders drawn {drawn:,} of {extra:,} (α {alpha:.4g})")
        if drawn >= extra:
            break
        alpha *= 0.9  # drew fewer than asked: buy a little faster and draw again
    else:
        raise RuntimeError(f"BG/NBD drew {drawn} repeat orders of {extra}")
    # Keep the repeats whose running index g maps to 1..extra under g ↦ (a(g-1)+b) mod drawn:
    # a bijection of 1..drawn (a coprime to it), so exactly `extra` are kept, spread evenly,
    # and the image is their dense id after the first orders.
    a = _coprime_near(drawn, drawn * 0.6180339887498949)
    b = drawn // 3
    pi_ = f"(({a}::bigint * (off + j - 1) + {b}) % {drawn}) + 1"
    # The m-th repeat of a buyer cut short falls at tau; every other one uniformly below it.
    t = f"CASE WHEN cut AND j = m THEN tau ELSE tau * {_u(41, 'off + j')} END"
    top = int(run.scalar("SELECT coalesce(max(cid), 0) FROM bench_buyers"))  # type: ignore[call-overload]
    per = max(int(CHUNK * buyers / max(drawn, 1)), 1)
    for lo, hi in _chunks(top, per):
        run.step(
            f"repeat orders (buyers ≤ {hi:,})",
            [
                f"""{order_cols} {order_select}
                    FROM (SELECT {first} + p AS i, cid,
                                 greatest(floor(age * 86400 - ({t}) * 86400), 0) AS back_s
                          FROM bench_buyers, generate_series(1, m) j,
                               LATERAL (SELECT {pi_} AS p) q
                          WHERE cid BETWEEN {lo} AND {hi} AND p <= {extra}) z"""
            ],
            "repeat orders",
        )

"""The re-tier bench's data drawn inside PostgreSQL (bench/retier_sql.py).

At a small size (2,000 customers in the 1 M bench's proportions) the SQL-drawn rows must
pass the application's own invariants (keys and foreign keys rebuilt and validated, the
sequences past the ids, a full re-tier giving every customer a tier, the BG/NBD fit
converging) and match the DuckDB generator's (bench/retier_data.py, data version 2) in the
proportions the re-tier reads: orders and events per customer, the share of repeat buyers,
order ages, refunds, relations and attributes per customer.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import Iterator
from statistics import mean
from typing import Any

import duckdb
import psycopg
import pytest
from sqlalchemy import text

from bench.retier_common import AS_OF, TZ
from bench.retier_data import generate as generate_duckdb
from bench.retier_data import load_postgres
from bench.retier_run import main as retier_run_main
from bench.retier_sql import generate as generate_sql
from bot.db import Database
from bot.db.migrate import upgrade_to_head
from bot.rules import load_dimensions
from bot.tiering.defaults import default_tiering
from bot.tiering.run import retier
from tests.support.corp import PG_URL

CUSTOMERS, ORDERS, EVENTS = 2_000, 20_000, 10_000  # the 1 M bench's proportions


def _dsn() -> str:
    return PG_URL.replace("postgresql+psycopg://", "postgresql://")


@contextlib.contextmanager
def _schema(kind: str) -> Iterator[tuple[str, str]]:
    """Yield (schema, url) of a migrated schema of its own; dropped at the end."""
    try:
        psycopg.connect(_dsn(), connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server answers at {PG_URL}: {exc}")
    schema = f"tagbot_test_{kind}_{uuid.uuid4().hex[:10]}"
    admin = Database(PG_URL)
    with admin.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    try:
        db = Database(url)
        upgrade_to_head(db.engine)
        db.dispose()
        yield schema, url
    finally:
        with admin.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="module")
def sql_url() -> Iterator[str]:
    """Filled by the SQL generator."""
    with _schema("sqlgen") as (schema, url):
        generate_sql(
            _dsn(),
            schema,
            customers=CUSTOMERS,
            orders=ORDERS,
            events=EVENTS,
            as_of=AS_OF,
            log=lambda _: None,
        )
        yield url


@pytest.fixture(scope="module")
def python_url() -> Iterator[str]:
    """Filled as the benches always did: drawn in DuckDB, copied in (data version 2)."""
    with _schema("duckgen") as (schema, url):
        con = duckdb.connect()
        generate_duckdb(con, customers=CUSTOMERS, orders=ORDERS, events=EVENTS, as_of=AS_OF)
        load_postgres(con, _dsn(), schema)
        con.close()
        yield url


def _stats(
    customers: list[tuple[Any, ...]],
    orders: list[tuple[Any, ...]],
    events: list[tuple[Any, ...]],
    relations: int,
    attributes: int,
) -> dict[str, float]:
    """The proportions the re-tier reads, from (customer_id, paid_at, status) orders etc."""
    n = len(customers)
    per_buyer = Counter(cid for cid, _, _ in orders)
    as_of = AS_OF.replace(tzinfo=None)
    last: dict[int, float] = {}
    for cid, paid, _ in orders:
        age = (as_of - paid.replace(tzinfo=None)).total_seconds() / 86400
        last[cid] = min(age, last.get(cid, age))
    return {
        "customers": n,
        "orders": len(orders),
        "events": len(events),
        "buyers share": len(per_buyer) / n,
        "orders per buyer": len(orders) / len(per_buyer),
        "repeat buyers share": sum(1 for c in per_buyer.values() if c > 1) / len(per_buyer),
        "buyers with 10+ orders share": sum(1 for c in per_buyer.values() if c >= 10)
        / len(per_buyer),
        # Per buyer, not per order: a few buyers with hundreds of orders weigh on the latter.
        "mean days since the last order": mean(last.values()),
        "buyers who ordered in the last year share": sum(1 for a in last.values() if a <= 365)
        / len(last),
        "refunded share": sum(1 for _, _, s in orders if s == "refunded") / len(orders),
        "customers with events share": len({cid for (cid,) in events}) / n,
        "relations per customer": relations / n,
        "attributes per customer": attributes / n,
        "unionid share": sum(1 for (u,) in customers if u is not None) / n,
    }


def _stats_of(fetch: Any) -> dict[str, float]:
    return _stats(
        fetch("SELECT unionid FROM customers"),
        fetch("SELECT customer_id, paid_at, status FROM orders"),
        fetch("SELECT customer_id FROM interaction_events"),
        fetch("SELECT count(*) FROM follow_relations")[0][0],
        fetch("SELECT count(*) FROM profile_attributes")[0][0],
    )


def _stats_at(url: str) -> dict[str, float]:
    db = Database(url)
    with db.engine.connect() as conn:
        stats = _stats_of(lambda q: conn.execute(text(q)).all())
    db.dispose()
    return stats


def _tiers(url: str) -> tuple[Any, list[tuple[str, int, int]]]:
    """Run a full re-tier; return its report and (dimension, customers, tiers) of each."""
    db = Database(url)
    report = retier(db, load_dimensions(default_tiering().dimensions), tz=TZ, as_of=AS_OF)
    with db.engine.connect() as conn:
        per_dim = conn.execute(
            text(
                "SELECT dimension, count(*), count(DISTINCT tier) FROM tier_assignments"
                " GROUP BY dimension ORDER BY dimension"
            )
        ).all()
    db.dispose()
    return report, [tuple(r) for r in per_dim]


def test_sql_data_has_the_python_generators_proportions(sql_url: str, python_url: str) -> None:
    got, want = _stats_at(sql_url), _stats_at(python_url)
    for exact in ("customers", "orders", "events", "orders per buyer"):
        assert got[exact] == pytest.approx(want[exact]), exact
    # Draws of their own: within a few standard errors of the DuckDB generator's at 2,000.
    tolerance = {
        "buyers share": 0.03,
        "repeat buyers share": 0.07,
        "buyers with 10+ orders share": 0.06,
        "mean days since the last order": 40.0,
        "buyers who ordered in the last year share": 0.06,
        "refunded share": 0.02,
        "customers with events share": 0.04,
        "relations per customer": 0.05,
        "attributes per customer": 0.05,
        "unionid share": 0.05,
    }
    off = {
        k: (round(got[k], 3), round(want[k], 3))
        for k, tol in tolerance.items()
        if abs(got[k] - want[k]) > tol
    }
    assert off == {}, f"(SQL, DuckDB) beyond tolerance: {off}"


def test_sql_data_passes_the_applications_invariants(sql_url: str) -> None:
    db = Database(sql_url)
    with db.engine.connect() as conn:
        # Keys, indexes and foreign keys are back and valid; the helpers are gone.
        invalid = conn.execute(
            text(
                "SELECT count(*) FROM pg_constraint WHERE NOT convalidated"
                " AND connamespace = current_schema()::regnamespace"
            )
        ).scalar_one()
        helpers = conn.execute(
            text(
                "SELECT count(*) FROM pg_proc WHERE proname LIKE 'bench\\_%'"
                " AND pronamespace = current_schema()::regnamespace"
            )
        ).scalar_one()
        fks = conn.execute(
            text(
                "SELECT count(*) FROM pg_constraint WHERE contype = 'f'"
                " AND conrelid = 'orders'::regclass"
            )
        ).scalar_one()
        indexes = conn.execute(
            text(
                "SELECT count(*) FROM pg_indexes WHERE tablename = 'orders'"
                " AND schemaname = current_schema()"
            )
        ).scalar_one()
        buyers_table = conn.execute(text("SELECT to_regclass('bench_buyers')")).scalar_one()
    assert (invalid, helpers, fks, buyers_table) == (0, 0, 1, None)
    assert indexes >= 5  # id, order_id, customer_id, external_userid, unionid
    # The sequences are past the generated ids: the application inserts without ids.
    with db.engine.begin() as conn:
        new_id = conn.execute(
            text(
                "INSERT INTO orders (order_id, customer_id, amount, paid_at, status, category,"
                " is_new_product, created_at, updated_at) VALUES ('new-1', 1, 100, now(),"
                " 'paid', '', false, now(), now()) RETURNING id"
            )
        ).scalar_one()
        conn.execute(text("DELETE FROM orders WHERE order_id = 'new-1'"))
    assert new_id == ORDERS + 1

    db.dispose()
    report, per_dim = _tiers(sql_url)
    assert report.customers == CUSTOMERS
    # Every dimension but member_level tiers customers: the bench's attribute is named
    # `member_level` (as retier_data writes it), not the 会员等级 that dimension reads.
    names = {d.name for d in load_dimensions(default_tiering().dimensions)}
    assert {d for d, _, _ in per_dim} == names - {"member_level"}
    assert all(n > 0 and tiers >= 1 for _, n, tiers in per_dim), per_dim
    # The nightly BG/NBD fit converges (no bound, no error) near the drawing parameters.
    model = report.model
    assert model is not None
    assert model.errors == []
    assert model.bgnbd is not None
    assert model.gamma_gamma is not None
    assert 0.05 < model.bgnbd.r < 0.25, model.summary()
    assert 0.2 < model.bgnbd.a < 1.5, model.summary()


def test_sql_data_tiers_like_the_python_generators(sql_url: str, python_url: str) -> None:
    """The same dimensions tier about as many customers into as many tiers on both."""
    (_, got), (py_report, want) = _tiers(sql_url), _tiers(python_url)
    assert py_report.model is not None
    assert py_report.model.errors == []
    assert [d for d, _, _ in got] == [d for d, _, _ in want]
    off = [
        (d, (n, tiers), (n2, tiers2))
        for (d, n, tiers), (_, n2, tiers2) in zip(got, want, strict=True)
        if abs(n - n2) > 0.05 * CUSTOMERS or abs(tiers - tiers2) > 1
    ]
    assert off == [], f"(dimension, SQL (customers, tiers), DuckDB) apart: {off}"


def test_sql_generation_needs_postgresql(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        retier_run_main(["--generate", "sql", "--customers", "10"])
    assert exit_.value.code == 2
    assert "--generate sql draws the data inside PostgreSQL" in capsys.readouterr().err

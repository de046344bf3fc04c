"""The schema stays ready for Citus (docs/citus.md): keys, foreign keys, triggers, row locks.

bot/db/citus.py places every table (distributed by customer id, reference, or local to the
coordinator) and lists the violations known today; these tests fail on any new one — a
table nobody placed, a customer table's key without customer_id, a foreign key Citus
refuses, a trigger on a distributed table, a row lock on a table that is not local.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import BigInteger, Column, ForeignKey, Index, MetaData, String, Table, text

from bot.db import Database, citus
from bot.db.citus import (
    DISTRIBUTED,
    KNOWN_EXCEPTIONS,
    LOCAL,
    REFERENCE,
    Placement,
    Violation,
    new_violations,
    schema_from_database,
    schema_from_metadata,
    stale_exceptions,
    violations,
)
from bot.db.models import Base
from tests.support.row_locks import LockSite, lock_sites, python_files

ROOT = Path(__file__).resolve().parent.parent
CODE = ("bot", "handlers", "jobs", "tagbot")
MODELS = {m.class_.__name__: m.local_table.name for m in Base.registry.mappers}  # type: ignore[attr-defined]
TABLES = frozenset(Base.metadata.tables)


def _report(found: list[Violation]) -> str:
    return "\n".join(str(v) for v in found)


def test_every_table_has_exactly_one_placement() -> None:
    groups = [set(DISTRIBUTED), set(REFERENCE), set(LOCAL)]
    assert sum(len(g) for g in groups) == len(set().union(*groups)), "a table placed twice"
    assert set().union(*groups) == set(TABLES)
    assert all(
        col in Base.metadata.tables[t].c or (t, col) in KNOWN_EXCEPTIONS
        for t, col in DISTRIBUTED.items()
    )


def test_the_orm_metadata_has_no_new_violation() -> None:
    found = violations(schema_from_metadata(Base.metadata))
    assert new_violations(found) == [], _report(new_violations(found))
    assert stale_exceptions(found) == [], "fixed: remove from KNOWN_EXCEPTIONS"


def test_the_migrated_postgresql_schema_has_no_new_violation(pg_schema_url: str) -> None:
    db = Database(pg_schema_url)
    try:
        schema = schema_from_database(db.engine)
    finally:
        db.dispose()
    found = violations(schema)
    assert new_violations(found) == [], _report(new_violations(found))
    assert stale_exceptions(found) == [], "fixed: remove from KNOWN_EXCEPTIONS"
    # the migrations hold the keys the models declare, no more and no fewer
    assert set(schema.columns) == set(TABLES)
    assert set(found) == set(violations(schema_from_metadata(Base.metadata)))
    # the outbox tallies' triggers exist, on the local outbox table only
    assert {t for t, _ in schema.triggers} == {"outbox_operations"}


def _sites() -> list[LockSite]:
    sites: list[LockSite] = []
    for path in python_files(ROOT, CODE):
        rel = str(path.relative_to(ROOT))
        sites += lock_sites(path.read_text(encoding="utf-8"), rel, MODELS, TABLES)
    return sites


def test_row_locks_take_only_coordinator_local_tables() -> None:
    sites = _sites()
    listing = "\n".join(map(str, sites))
    # the claims this project is known to make: the scan must find them
    assert {s.path for s in sites} >= {
        "bot/callbacks/inbox.py",
        "bot/tags/outbox.py",
        "bot/outreach/claims.py",
        "bot/wecom/budget.py",
        "bot/staff_alerts.py",
    }, listing
    untraced = [s for s in sites if not s.tables]
    assert untraced == [], "lock whose table the scan cannot tell:\n" + "\n".join(
        map(str, untraced)
    )
    bad = [s for s in sites if not s.tables <= LOCAL]
    assert bad == [], "row lock on a table not local to the coordinator:\n" + "\n".join(
        map(str, bad)
    )


# --- the checks fail on what they are meant to catch ------------------------------------


def _with_bad_table(metadata: MetaData) -> MetaData:
    """A copy of the schema plus a customer table with every fault a new table might have."""
    copy = MetaData(naming_convention=dict(Base.metadata.naming_convention))
    for table in Base.metadata.sorted_tables:
        table.to_metadata(copy)
    Table(
        "coupons",
        copy,
        Column("id", BigInteger, primary_key=True),
        Column("code", String(32), unique=True),
        Column("customer_id", BigInteger, ForeignKey("customers.id", ondelete="SET NULL")),
        Column("run_id", BigInteger, ForeignKey("campaign_runs.id")),
        Column("serial", String(32)),
        Index("ix_coupons_serial", "serial", unique=True),
    )
    return copy


def test_an_unplaced_table_fails() -> None:
    found = new_violations(violations(schema_from_metadata(_with_bad_table(Base.metadata))))
    assert found == [Violation("coupons", "-", "not classified in bot/db/citus.py")]


def test_a_new_customer_table_without_customer_keys_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(citus.DISTRIBUTED, "coupons", "customer_id")
    found = new_violations(violations(schema_from_metadata(_with_bad_table(Base.metadata))))
    assert {(v.table, v.name): v.problem for v in found} == {
        ("coupons", "customer_id"): "distribution column is nullable",
        ("coupons", "pk_coupons"): "key (id) lacks customer_id",
        ("coupons", "uq_coupons_code"): "key (code) lacks customer_id",
        ("coupons", "ix_coupons_serial"): "key (serial) lacks customer_id",
        ("coupons", "fk_coupons_customer_id_customers"): (
            "ON DELETE SET NULL on a key holding the distribution column"
        ),
        ("coupons", "fk_coupons_run_id_campaign_runs"): (
            "a distributed table cannot reference the coordinator-local campaign_runs"
        ),
    }


def test_a_bad_table_in_the_migrated_postgresql_schema_fails(pg_schema_url: str) -> None:
    db = Database(pg_schema_url)
    try:
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE TABLE coupons (id BIGSERIAL CONSTRAINT pk_coupons PRIMARY KEY,"
                    " customer_id BIGINT REFERENCES customers (id), code TEXT)"
                )
            )
            conn.execute(text("CREATE UNIQUE INDEX ix_coupons_code ON coupons (code)"))
            conn.execute(
                text("CREATE UNIQUE INDEX ix_coupons_customer ON coupons (customer_id, code)")
            )
        unplaced = new_violations(violations(schema_from_database(db.engine)))
        assert unplaced == [Violation("coupons", "-", "not classified in bot/db/citus.py")]
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(citus.DISTRIBUTED, "coupons", "customer_id")
            found = new_violations(violations(schema_from_database(db.engine)))
        assert sorted((v.table, v.name) for v in found) == [
            ("coupons", "customer_id"),
            ("coupons", "ix_coupons_code"),
            ("coupons", "pk_coupons"),
        ]
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS coupons"))
        db.dispose()


def test_a_row_lock_on_a_distributed_table_is_caught() -> None:
    source = """
from sqlalchemy import select, text
from bot.db.models import Order, OutboxOperation

_BY_CUSTOMER = select(Order).where(Order.customer_id == 1)

def pick(session):
    query = _BY_CUSTOMER.limit(10)
    return session.scalars(query.with_for_update(skip_locked=True))

def take(session, op_id):
    session.get(OutboxOperation, op_id, with_for_update=True)
    return session.execute(text("SELECT * FROM interaction_events FOR UPDATE"))
"""
    sites = lock_sites(source, "x.py", MODELS, TABLES)
    assert [(s.scope, set(s.tables)) for s in sites] == [
        ("pick", {"orders"}),
        ("take", {"outbox_operations"}),
        ("take", {"interaction_events"}),
    ]
    assert [citus.placement(t) for s in sites for t in s.tables] == [
        Placement.DISTRIBUTED,
        Placement.LOCAL,
        Placement.DISTRIBUTED,
    ]


def test_docs_citus_md_holds_the_placements_and_exceptions_from_the_code() -> None:
    doc = (ROOT / "docs" / "citus.md").read_text(encoding="utf-8")
    assert citus.placement_table() in doc, "docs/citus.md: paste `python -m bot.db.citus`"
    assert citus.exceptions_table() in doc, "docs/citus.md: paste `python -m bot.db.citus`"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/citus.md" in readme

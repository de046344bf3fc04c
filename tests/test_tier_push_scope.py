"""A touched re-tier's push diffs its own customers' relations only; a full push diffs all."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

import pytest
from sqlalchemy import select, text

from bot.db.models import Customer, OutboxOperation
from bot.retier import retier_configured
from bot.runtime import Runtime
from bot.tags import push
from tests.support import parts
from tests.support.tiers import (
    ACTIVITY,
    VALUE,
    assign_tiers,
    mark_tag_calls,
    relation_tag_names,
    synced_tier_runtime,
    two_member_corp,
)
from tests.tier_metrics_factory import AS_OF, local, order
from wecom_sim import Simulator


@pytest.fixture
def corp(simulator: Simulator) -> list[str]:
    """Two members; alice has four customers, bob shares the first one."""
    return two_member_corp(simulator, "wm_scope_", 4)


@pytest.fixture
def rt(db_url: str, simulator: Simulator, corp: list[str]) -> Iterator[Runtime]:
    with closing(synced_tier_runtime(db_url, simulator, VALUE, ACTIVITY)) as runtime:
        yield runtime


def _ids(rt: Runtime, *externals: str) -> list[int]:
    with rt.db.read() as session:
        by_ext = dict(session.execute(select(Customer.external_userid, Customer.id)).all())
    return [by_ext[e] for e in externals]


def _queued_for(rt: Runtime) -> list[tuple[str, str]]:
    with rt.db.read() as session:
        rows = session.execute(
            select(OutboxOperation.staff_userid, OutboxOperation.external_userid)
            .where(OutboxOperation.status == "pending")
            .order_by(OutboxOperation.staff_userid, OutboxOperation.external_userid)
        ).all()
    return [(s, e) for s, e in rows]


def test_a_touched_push_queues_only_its_customers_relations(
    rt: Runtime, simulator: Simulator, corp: list[str]
) -> None:
    assign_tiers(rt, {c: {"value": "低价值", "activity": "沉睡"} for c in corp})
    push.enqueue_tier_push(**parts.tier_push(rt))
    push.drain_all(**parts.drain(rt), idle_poll=0.05)
    simulator.reset_counters()

    # The touched customer moves in both dimensions; another customer's tag drifts too
    # (its tier changed without a push, as after a run whose hand-off failed).
    assign_tiers(rt, {corp[0]: {"value": "高价值", "activity": "活跃"}})
    assign_tiers(rt, {corp[2]: {"value": "中价值"}})

    plan = push.enqueue_tier_push(**parts.tier_push(rt), customer_ids=_ids(rt, corp[0]))
    assert plan.diff.relations == 2  # alice's and bob's relation with the touched customer
    assert (plan.diff.changed, plan.diff.new_operations) == (2, 2)
    assert (plan.diff.adds, plan.diff.removes) == (4, 4)
    assert _queued_for(rt) == [("alice", corp[0]), ("bob", corp[0])]
    push.drain_all(**parts.drain(rt), idle_poll=0.05)
    assert mark_tag_calls(simulator) == 2  # one call per changed relation, both dimensions in it
    for userid in ("alice", "bob"):
        assert relation_tag_names(simulator, userid, corp[0]) == {"价值分层/高价值", "活跃度/活跃"}
    assert relation_tag_names(simulator, "alice", corp[2]) == {"价值分层/低价值", "活跃度/沉睡"}

    # A customer touched with nothing to change (or without relations) queues nothing.
    nothing = push.enqueue_tier_push(**parts.tier_push(rt), customer_ids=_ids(rt, corp[0], corp[1]))
    assert (nothing.diff.relations, nothing.diff.changed) == (3, 0)
    assert push.enqueue_tier_push(**parts.tier_push(rt), customer_ids=[]).diff.relations == 0

    # The full push (nightly) still finds the drifted relation.
    simulator.reset_counters()
    full = push.enqueue_tier_push(**parts.tier_push(rt))
    assert (full.diff.relations, full.diff.changed) == (5, 1)
    assert _queued_for(rt) == [("alice", corp[2])]
    push.drain_all(**parts.drain(rt), idle_poll=0.05)
    assert mark_tag_calls(simulator) == 1
    assert relation_tag_names(simulator, "alice", corp[2]) == {"价值分层/中价值", "活跃度/沉睡"}


def test_touched_customers_beyond_one_transaction_are_all_diffed(
    rt: Runtime, corp: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.tags import diff

    monkeypatch.setattr(diff, "CUSTOMER_CHUNK", 1)  # one customer per transaction
    assign_tiers(rt, {c: {"value": "低价值"} for c in corp})
    seen: list[tuple[int, int]] = []
    push.enqueue_tier_push(**parts.tier_push(rt), customer_ids=[])  # creates the tier tags in WeCom
    with rt.db.read() as session:
        dims = push.tier_tags.dimensions(rt.settings.tiering, session=session)
    report = diff.enqueue_tier_changes(
        db=rt.db,
        dims=dims,
        customer_ids=_ids(rt, corp[3], corp[0], corp[0]),
        on_progress=lambda done, total: seen.append((done, total)),
    )
    assert (report.relations, report.changed) == (3, 3)
    assert seen == [(1, 2), (2, 2)]
    assert _queued_for(rt) == [("alice", corp[0]), ("alice", corp[3]), ("bob", corp[0])]


def test_a_touched_re_tier_hands_off_only_its_customers(
    rt: Runtime, simulator: Simulator, corp: list[str]
) -> None:
    by_ext = dict(zip(corp, _ids(rt, *corp), strict=True))
    with rt.db.write() as s:
        order(s, s.get(Customer, by_ext[corp[0]]), 6000, local(3))
        order(s, s.get(Customer, by_ext[corp[2]]), 300, local(3))
    report, handoff = retier_configured(**parts.retier(rt), as_of=AS_OF)
    assert handoff is not None
    assert handoff.queued == 3  # alice and bob × customer 0, alice × customer 2
    push.drain_all(**parts.drain(rt), idle_poll=0.05)
    assign_tiers(rt, {corp[2]: {"value": "中价值"}})  # drifted, its hand-off never ran
    with rt.db.write() as s:
        order(s, s.get(Customer, by_ext[corp[1]]), 1500, local(1))  # fresh data

    report, handoff = retier_configured(
        **parts.retier(rt), as_of=AS_OF, customer_ids=[by_ext[corp[1]]]
    )
    assert (report.scope, report.transitions) == ("touched", 1)
    assert handoff is not None
    assert handoff.queued == 1
    assert _queued_for(rt) == [("alice", corp[1])]


def test_a_diff_leaves_its_scratch_tables_without_pages(rt: Runtime, corp: list[str]) -> None:
    # Temporary tables are never vacuumed: pages a big diff filled and only DELETE emptied
    # would be scanned by every later diff on that pooled connection.
    if rt.db.is_sqlite:
        pytest.skip("SQLite's DELETE without WHERE truncates")
    from bot.tags import diff

    assign_tiers(rt, {c: {"value": "低价值", "activity": "沉睡"} for c in corp})
    push.enqueue_tier_push(**parts.tier_push(rt), customer_ids=[])  # creates the tier tags in WeCom
    with rt.db.read() as session:
        dims = push.tier_tags.dimensions(rt.settings.tiering, session=session)
    with rt.db.write() as session:
        tmap = diff.tag_map(session, dims)
        report = diff.enqueue_range(session, tmap, 0, 10**12)
        customers = diff.enqueue_customers(session, tmap, _ids(rt, *corp))
        sizes = session.execute(
            text(
                "SELECT pg_relation_size('tier_diff_changes') + pg_relation_size"
                "('tier_diff_relations') + pg_relation_size('tier_diff_scope')"
            )
        ).scalar_one()
    assert (report.changed, report.adds, customers.relations) == (5, 10, 5)
    assert sizes == 0

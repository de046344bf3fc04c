"""The 概览 numbers: KPI cards with 较昨日 over the aggregates, queues, WeCom budget use."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy import insert

from bot.config import Settings, settings_from_mapping
from bot.db import Database
from bot.db.models import InboxEvent, OutboxOperation, WeComBudgetSlot
from bot.reports import channel_stats, operations, overview
from bot.reports.definitions import DEFINITIONS
from bot.rules import load_dimensions
from bot.tiering.run import retier
from tests.support.corp import CORP_ID, base_config
from tests.support.tiers import VALUE
from tests.tier_metrics_factory import AS_OF, TZ, ZONE, D, customer, local, order, relation, staff

CHURN = {
    "name": "churn",
    "tag_group": "流失预警",
    "tiers": [{"tag": "流失预警", "when": "days_since_last_order > 60"}],
}


def _settings(db_url: str, *dims: Mapping[str, object]) -> Settings:
    return settings_from_mapping(
        {**base_config(db_url), "tiering": {"dimensions": list(dims)}}, environ={}
    )


def test_fresh_install_overview_is_zeros(db: Database, db_url: str) -> None:
    settings = _settings(db_url)
    with db.read() as s:
        got = overview.overview(session=s, settings=settings, now=AS_OF)
    assert got.today == D
    assert [k.value for k in got.kpis[:6]] == [0, 0, 0, 0, 0, 0]
    assert all(k.delta is None for k in got.kpis)
    assert got.high_value.value is None  # no 高价值 tier configured
    assert got.churn_warning.value is None
    assert len(got.trend.days) == overview.TREND_DAYS
    assert got.tiers == {}
    assert got.last_runs.last is None
    assert got.wecom == ()
    assert got.data_as_of is None
    assert all(k.definition.help for k in got.kpis)


def test_overview_cards_and_deltas(db: Database, db_url: str) -> None:
    settings = _settings(db_url, VALUE, CHURN)
    with db.write() as s:
        a = staff(s, "a")
        for i, (yuan, ago, added) in enumerate(
            [(6000, 10, 0), (5000, 90, 0), (100, 100, 1), (20, 5, 1)]
        ):
            c = customer(s, f"k{i}")
            order(s, c, yuan, local(ago))
            relation(s, c, a, added=local(added))
    dims = load_dimensions(settings.tiering.dimensions)
    retier(db, dims, tz=TZ, as_of=AS_OF - timedelta(days=1))
    with db.write() as s:
        c = customer(s, "k9")
        order(s, c, 7000, local(0, 9))
        relation(s, c, a, added=local(0, 8))
    retier(db, dims, tz=TZ, as_of=AS_OF)
    channel_stats.rollup(db, tz=ZONE, now=AS_OF)
    with db.read() as s:
        got = overview.overview(session=s, settings=settings, now=AS_OF)
    # Friends at yesterday's end: k2, k3; now k0, k1 and k9 too.
    assert (got.customers_total.value, got.customers_total.previous) == (5, 2)
    assert got.customers_total.delta == 3
    assert (got.added_today.value, got.added_today.previous) == (3, 2)
    assert got.net_today.value == 3
    assert (got.high_value.value, got.high_value.previous) == (3, 2)
    # 90 and 100 days since the last order at AS_OF (the day before: 89 and 99).
    assert (got.churn_warning.value, got.churn_warning.previous) == (2, 2)
    assert list(got.tiers) == ["value", "churn"]
    assert got.tiers["value"].of("低价值") == 2
    assert got.data_as_of == AS_OF
    assert got.last_runs.last is not None
    assert got.last_runs.last.as_of == AS_OF
    assert overview.trend_tail(got.trend, 7)[-1].added == 3


def test_queue_depths_and_wecom_usage(db: Database, db_url: str) -> None:
    settings = _settings(db_url)
    now = 1_800_000_000.0
    with db.write() as s:
        for i, status in enumerate(["pending", "processing", "done", "dead", "dead", "ignored"]):
            s.add(InboxEvent(dedup_key=f"k{i}", event="e", payload="", status=status))
        for status in ["pending", "in_flight", "done", "done", "dead"]:
            s.add(OutboxOperation(kind="mark_tag", status=status))
        minute, hour = math.floor(now), math.floor(now / 60)
        s.execute(
            insert(WeComBudgetSlot),
            [
                {"corp_id": CORP_ID, "api": "a", "scale": "minute", "slot": minute, "bulk": 5},
                {
                    "corp_id": CORP_ID,
                    "api": "a",
                    "scale": "minute",
                    "slot": minute - 59,
                    "interactive": 2,
                },
                {
                    "corp_id": CORP_ID,
                    "api": "a",
                    "scale": "minute",
                    "slot": minute - 60,
                    "bulk": 100,
                },
                {"corp_id": CORP_ID, "api": "a", "scale": "hour", "slot": hour, "bulk": 7},
                {"corp_id": CORP_ID, "api": "a", "scale": "hour", "slot": hour - 60, "bulk": 9},
                {"corp_id": CORP_ID, "api": "b", "scale": "hour", "slot": hour - 59, "bulk": 4},
                {"corp_id": "other", "api": "a", "scale": "minute", "slot": minute, "bulk": 50},
            ],
        )
    with db.read() as s:
        depths = operations.queue_depths(session=s)
        usage = operations.wecom_usage(session=s, corp_id=CORP_ID, limits=settings.limits, now=now)
    assert (depths.inbox_waiting, depths.inbox_dead) == (2, 2)
    assert (depths.outbox_queued, depths.outbox_dead) == (2, 1)
    assert [(u.api, u.minute, u.hour) for u in usage] == [("a", 7, 7), ("b", 0, 4)]
    assert usage[0].minute_budget == settings.limits.calls_per_minute
    assert usage[0].hour_budget == settings.limits.calls_per_hour


def test_every_definition_is_chinese_text() -> None:
    for d in DEFINITIONS.values():
        assert d.label
        assert d.help.endswith("。")


def test_outbox_counts_are_equal_to_a_recount(db: Database) -> None:
    """The page's counts (the outbox's tallies): each open status everywhere, and every
    status of the push's range (ids above the split, done included), as counting the rows."""
    from sqlalchemy import func, select

    from bot.reports import tier_movement

    statuses = ["pending", "in_flight", "dead", "done", "pending", "done", "dead", "pending"]
    with db.write() as s:
        ops = [OutboxOperation(kind="mark_tag", status=st) for st in statuses * 3]
        s.add_all(ops)
        s.flush()
        split = ops[len(statuses) + 2].id
    with db.read() as s:
        got = operations.outbox_counts(session=s, push_from=split)
        open_only = operations.outbox_counts(session=s, push_from=None)

        def recount(*cond: object, states: tuple[str, ...]) -> dict[str, int]:
            return {
                st: int(
                    s.scalar(
                        select(func.count())
                        .select_from(OutboxOperation)
                        .where(OutboxOperation.status == st, *cond)  # type: ignore[arg-type]
                    )
                    or 0
                )
                for st in states
            }

        every = ("pending", "in_flight", "done", "dead")
        assert got.everywhere == recount(states=operations.OPEN)
        assert got.everywhere == {"pending": 9, "in_flight": 3, "dead": 6}
        assert got.push == recount(OutboxOperation.id > split, states=every)
        assert got.push == {"pending": 5, "in_flight": 1, "done": 4, "dead": 3}
        assert open_only.everywhere == got.everywhere
        assert set(open_only.push.values()) == {0}
        depths = operations.queue_depths(session=s, outbox=got)
        progress = tier_movement.push_progress(session=s, since_id=split, outbox=got)
        alone = tier_movement.push_progress(session=s, since_id=split)
    assert (depths.outbox_queued, depths.outbox_dead) == (12, 6)
    assert (progress.queued, progress.sent, progress.failed) == (6, 4, 3)
    assert alone == progress

"""The uplift report on both databases: known effects recovered, exact counts, windows, runs."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.db import Database
from bot.errors import NotFoundError
from bot.outreach.report import ALL_TIERS, NOT_ELAPSED, CampaignResults, campaign_results
from tests.support import outreach_data as data
from tests.support.deliveries import Delivery, add_deliveries
from tests.support.outreach_data import AS_OF

AFTER = AS_OF + timedelta(days=31)  # every window of a run at AS_OF has elapsed


def _results(db: Database, name: str, now: object = AFTER) -> CampaignResults:
    with db.read() as s:
        return campaign_results(name, session=s, now=now)  # type: ignore[arg-type]


def test_known_effect_is_recovered_on_20000_customers(db: Database) -> None:
    cid = data.campaign(db, "vip-care")
    run = data.run(db, cid, AS_OF)
    people = data.customers(db, 20_000)
    truths = [
        data.synthetic_run(
            db, run, AS_OF, people[:10_000], base=0.10, effect=0.05, seed=1, tier="高价值"
        ),
        data.synthetic_run(
            db, run, AS_OF, people[10_000:], base=0.10, effect=0.05, seed=2, tier="潜力客户"
        ),
    ]
    results = _results(db, "vip-care")
    assert [s.tier for s in results.segments] == [ALL_TIERS, "潜力客户", "高价值"]
    overall = results.segment(ALL_TIERS)
    conv = overall.metric("conversion_30d")
    assert conv.treatment.n == sum(t.treatment for t in truths)
    assert conv.holdout.n == sum(t.holdout for t in truths)
    assert conv.absolute is not None
    assert conv.absolute.low is not None
    # The true +5 points lies inside the 95% interval, and 0 does not.
    assert conv.absolute.covers(0.05)
    assert conv.absolute.low > 0
    assert conv.relative is not None
    assert conv.relative.covers(0.5)
    revenue = overall.metric("revenue_per_customer")
    assert revenue.absolute is not None
    assert revenue.absolute.low is not None
    assert revenue.absolute.covers(truths[0].revenue_lift)  # 0.05 × 1.3 × 150 yuan
    assert revenue.absolute.low > 0
    # Buyers spend the same in both arms: the AOV interval contains no difference.
    aov = overall.metric("aov")
    assert aov.absolute is not None
    assert aov.absolute.covers(0.0)
    assert overall.warning is None
    for tier, truth in zip(("高价值", "潜力客户"), truths, strict=True):
        part = results.segment(tier).metric("conversion_30d")
        assert (part.treatment.n, part.holdout.n) == (truth.treatment, truth.holdout)
        assert part.absolute is not None
        assert part.absolute.covers(0.05)


def test_no_effect_interval_contains_zero(db: Database) -> None:
    cid = data.campaign(db, "no-effect")
    run = data.run(db, cid, AS_OF)
    people = data.customers(db, 20_000)
    data.synthetic_run(db, run, AS_OF, people, base=0.10, effect=0.0, seed=3)
    overall = _results(db, "no-effect").segment(ALL_TIERS)
    for key in ("conversion_7d", "conversion_14d", "conversion_30d", "revenue_per_customer"):
        lift = overall.metric(key).absolute
        assert lift is not None, key
        assert lift.covers(0.0), key


def _exact_campaign(db: Database) -> None:
    """Six customers with orders on and around the window edges (see the test)."""
    cid = data.campaign(db, "exact")
    run = data.run(db, cid, AS_OF)
    c = data.customers(db, 6, prefix="wm_exact")
    with db.write() as s:
        add_deliveries(
            s,
            run,
            [
                Delivery(c[0], "sent", tier="高价值", staff_userid="zhangsan"),
                Delivery(c[1], "unconfirmed", tier="高价值", staff_userid="zhangsan"),
                Delivery(c[2], "sent", tier="高价值", staff_userid="zhangsan"),
                Delivery(c[3], "holdout", "holdout", tier="高价值"),
                Delivery(c[4], "holdout", "holdout", tier="高价值"),
            ],
        )
    day = timedelta(days=1)
    second = timedelta(seconds=1)
    data.orders(
        db,
        [
            (c[0], 100.0, AS_OF + 7 * day, "paid"),  # exactly on the 7-day edge: counts
            (c[0], 50.0, AS_OF + 20 * day, "paid"),
            (c[1], 80.0, AS_OF + 7 * day + second, "paid"),  # just past 7 days
            (c[1], 500.0, AS_OF + 3 * day, "refunded"),  # refunds never count
            (c[2], 60.0, AS_OF, "paid"),  # at the run itself: before the window
            (c[2], 40.0, AS_OF + 30 * day + second, "paid"),  # after the window
            (c[3], 30.0, AS_OF + day, "paid"),
            (c[5], 900.0, AS_OF + day, "paid"),  # not in the campaign
        ],
    )
    # Another campaign's run on the same customers, and an unsent run of this one.
    other = data.campaign(db, "other")
    other_run = data.run(db, other, AS_OF)
    with db.write() as s:
        add_deliveries(
            s, other_run, [Delivery(c[4], "sent", tier="高价值", staff_userid="zhangsan")]
        )
    data.orders(db, [(c[4], 70.0, AS_OF + 40 * day, "paid")])
    unsent = data.run(db, cid, AS_OF + 2 * day, status="planned")
    with db.write() as s:
        add_deliveries(
            s, unsent, [Delivery(c[5], "planned", tier="高价值", staff_userid="zhangsan")]
        )


def test_exact_counts_on_the_window_edges(db: Database) -> None:
    _exact_campaign(db)
    results = _results(db, "exact")
    assert (results.runs, results.unsent_runs) == (1, 1)
    assert [s.tier for s in results.segments] == [ALL_TIERS]  # one tier: no repeat of it
    seg = results.segment(ALL_TIERS)

    def arms(key: str, *, reached: bool = False) -> tuple[object, ...]:
        m = seg.metric(key, reached=reached)
        return (m.treatment.n, m.treatment.events, m.holdout.n, m.holdout.events)

    assert arms("conversion_7d") == (3, 1, 2, 1)
    assert arms("conversion_14d") == (3, 2, 2, 1)
    assert arms("conversion_30d") == (3, 2, 2, 1)
    assert arms("repurchase_rate") == (3, 1, 2, 0)
    assert arms("conversion_30d", reached=True) == (2, 1, 2, 1)
    revenue = seg.metric("revenue_per_customer")
    assert revenue.treatment.value == pytest.approx((150 + 80 + 0) / 3)
    assert revenue.holdout.value == pytest.approx(15.0)
    assert revenue.absolute is not None
    assert revenue.absolute.value == pytest.approx(230 / 3 - 15)
    assert revenue.absolute.low is None  # under 30 per arm: a point estimate, no interval
    aov = seg.metric("aov")
    assert (aov.treatment.n, aov.holdout.n) == (2, 1)
    assert aov.treatment.value == pytest.approx((75 + 80) / 2)
    assert aov.holdout.value == pytest.approx(30.0)
    assert aov.absolute is not None
    assert aov.absolute.low is None
    assert seg.metric("revenue_per_customer", reached=True).treatment.value == pytest.approx(75)
    assert seg.warning is not None
    assert seg.warning.startswith("样本太少，暂不能下结论")
    assert "实验组 3 人、转化 2 人；对照组 2 人、转化 1 人" in seg.warning
    assert all(m.too_small for m in seg.itt)


def test_windows_not_elapsed_are_not_low_conversion(db: Database) -> None:
    _exact_campaign(db)
    seg = _results(db, "exact", now=AS_OF + timedelta(days=10)).segment(ALL_TIERS)
    assert seg.metric("conversion_7d").elapsed
    for key in ("conversion_14d", "conversion_30d", "revenue_per_customer", "aov"):
        m = seg.metric(key)
        assert not m.elapsed
        assert m.absolute is None
        assert m.treatment.value is None
        assert m.to_json()["status"] == NOT_ELAPSED
    early = _results(db, "exact", now=AS_OF + timedelta(days=2)).segment(ALL_TIERS)
    assert not any(m.elapsed for m in early.itt)
    assert early.warning is not None
    assert "实验组 3 人，对照组 2 人" in early.warning


def test_runs_accumulate(db: Database) -> None:
    cid = data.campaign(db, "monthly")
    people = data.customers(db, 4000)
    second_at = AS_OF + timedelta(days=35)
    first = data.synthetic_run(
        db, data.run(db, cid, AS_OF), AS_OF, people, base=0.1, effect=0.05, seed=8
    )
    second = data.synthetic_run(
        db, data.run(db, cid, second_at), second_at, people, base=0.1, effect=0.05, seed=9
    )
    both = _results(db, "monthly", now=second_at + timedelta(days=31))
    assert both.runs == 2
    assert (both.first_run, both.last_run) == (AS_OF, second_at)
    conv = both.segment(ALL_TIERS).metric("conversion_30d")
    assert (conv.runs, conv.treatment.n, conv.holdout.n) == (
        2,
        first.treatment + second.treatment,
        first.holdout + second.holdout,
    )
    # While the second run's 30 days are still open only the first counts for them.
    partial = _results(db, "monthly", now=second_at + timedelta(days=10)).segment(ALL_TIERS)
    month = partial.metric("conversion_30d")
    week = partial.metric("conversion_7d")
    assert (month.runs, month.treatment.n, month.holdout.n) == (1, first.treatment, first.holdout)
    assert (week.runs, week.treatment.n) == (2, first.treatment + second.treatment)
    # More deliveries, a narrower interval.
    assert conv.absolute is not None
    assert month.absolute is not None
    assert conv.absolute.low is not None
    assert conv.absolute.high is not None
    assert month.absolute.low is not None
    assert month.absolute.high is not None
    assert conv.absolute.high - conv.absolute.low < month.absolute.high - month.absolute.low


def test_unknown_campaign_is_not_found(db: Database) -> None:
    with pytest.raises(NotFoundError, match="nope"):
        _results(db, "nope")


def test_campaign_with_only_unsent_runs_has_no_segments(db: Database) -> None:
    cid = data.campaign(db, "waiting")
    data.run(db, cid, AS_OF, status="held")
    results = _results(db, "waiting")
    assert (results.runs, results.unsent_runs, results.segments) == (0, 1, ())

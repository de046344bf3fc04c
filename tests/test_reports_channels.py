"""Daily channel counts: the rollup over relations and orders, and what the pages read."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import Channel, ChannelDay, Customer, FollowRelation, Staff
from bot.reports import channel_stats
from bot.reports.channel_stats import ALL
from bot.runtime import Runtime
from jobs import registry
from jobs.reports import CHANNEL_STATS_JOB
from tests.support.corp import base_config
from tests.tier_metrics_factory import AS_OF, ZONE, D, channel, customer, local, order, staff


def _rel(
    s: Session,
    c: Customer,
    st: Staff,
    ch: Channel | None,
    added: datetime,
    *,
    lost: datetime | None = None,
    reason: str | None = None,
) -> None:
    s.add(
        FollowRelation(
            staff_id=st.id,
            customer_id=c.id,
            channel_id=ch.id if ch else None,
            added_at=added,
            status="lost" if lost else "active",
            lost_at=lost,
            lost_reason=reason,
        )
    )


def _build(db: Database) -> dict[str, int]:
    """Two channels, seven customers: adds and the three kinds of loss today and yesterday."""
    with db.write() as s:
        a, b = staff(s, "a"), staff(s, "b")
        ca, cb = channel(s, "A"), channel(s, "B")
        c = {f"c{i}": customer(s, f"c{i}") for i in range(1, 8)}
        _rel(s, c["c1"], a, ca, local(0, 10))
        _rel(s, c["c1"], b, cb, local(0, 10, 30))
        _rel(s, c["c2"], a, ca, local(0, 9))
        _rel(s, c["c2"], b, ca, local(0, 9, 5))  # the same customer twice: counted once
        _rel(s, c["c3"], a, ca, local(1), lost=local(0, 8), reason="del_follow_user")
        _rel(s, c["c4"], a, cb, local(5), lost=local(0, 11), reason="del_external_contact")
        _rel(s, c["c5"], a, None, local(0, 1))
        _rel(s, c["c6"], a, ca, local(3), lost=local(0, 7), reason="transferred")
        _rel(s, c["c7"], b, ca, local(1, 9), lost=local(1, 20), reason="del_follow_user")
        order(s, c["c1"], 100, local(0, 11))  # after both adds: A and B
        order(s, c["c3"], 50, local(2))  # before the add: no conversion
        order(s, c["c6"], 80, local(1), status="refunded")
        order(s, c["c7"], 30, local(1, 12))
        order(s, c["c7"], "0.5", local(1, 13))
        s.flush()
        return {"A": ca.id, "B": cb.id}


def _counts(d: channel_stats.DayCounts) -> tuple[int, int, int, int, int]:
    return (d.added, d.lost_by_customer, d.lost_by_staff, d.lost_other, d.net)


def test_rollup_counts_today_per_channel(db: Database) -> None:
    ids = _build(db)
    report = channel_stats.rollup(db, tz=ZONE, now=AS_OF)
    assert report.days[-1] == D
    assert report.channels == 2
    assert report.orders
    with db.read() as s:
        listed = channel_stats.channel_summary(session=s, today=D)
    assert listed.computed_at == AS_OF
    by_name = {c.name: c for c in listed.channels}
    assert list(by_name) == ["A", "B"]
    a, b = by_name["A"], by_name["B"]
    assert a.channel_id == ids["A"]
    assert _counts(a.today) == (2, 1, 0, 1, 0)
    assert _counts(b.today) == (1, 0, 1, 0, 0)
    assert (a.customers, b.customers) == (5, 2)
    assert (a.converted, a.revenue) == (2, Decimal("130.50"))
    assert (b.converted, b.revenue) == (1, Decimal("100.00"))
    assert a.conversion_rate == 2 / 5
    assert a.orders_at == AS_OF


def test_every_relation_row_deduplicates_across_channels(db: Database) -> None:
    _build(db)
    channel_stats.rollup(db, tz=ZONE, now=AS_OF)
    with db.read() as s:
        trend = channel_stats.channel_trend(ALL, session=s, today=D, days=3)
    yesterday, today = trend.days[-2], trend.days[-1]
    assert _counts(today) == (3, 1, 1, 1, 0)
    assert today.customers == 3  # c1, c2, c5 still friends
    assert _counts(yesterday) == (2, 1, 0, 0, 1)
    assert yesterday.customers == 3  # c3, c4, c6 at yesterday's end
    assert _counts(trend.days[0]) == (0, 0, 0, 0, 0)


def test_channel_trend_is_zero_filled_oldest_first(db: Database) -> None:
    ids = _build(db)
    channel_stats.rollup(db, tz=ZONE, now=AS_OF)
    with db.read() as s:
        trend = channel_stats.channel_trend(ids["A"], session=s, today=D, days=4)
    assert [d.day for d in trend.days] == [D - timedelta(days=i) for i in (3, 2, 1, 0)]
    assert [d.added for d in trend.days] == [1, 0, 2, 2]
    assert [d.lost_by_customer for d in trend.days] == [0, 0, 1, 1]
    assert [d.net for d in trend.days] == [1, 0, 1, 0]


def test_later_rollup_recounts_today_and_keeps_past_days(db: Database) -> None:
    ids = _build(db)
    channel_stats.rollup(db, tz=ZONE, now=AS_OF)
    with db.write() as s:
        c8 = customer(s, "c8")
        _rel(s, c8, s.scalars(select(Staff).where(Staff.userid == "a")).one(), None, local(0, 13))
        c8.name = "x"
        ca = s.get(Channel, ids["A"])
        assert ca is not None
        order(s, c8, 10, local(0, 14))
    later = AS_OF + timedelta(hours=3)
    report = channel_stats.rollup(db, tz=ZONE, now=later, orders=False)
    assert report.days == (D - timedelta(days=1), D)
    assert not report.orders
    with db.read() as s:
        today = channel_stats.channel_trend(ALL, session=s, today=D, days=1).days[0]
        listed = channel_stats.channel_summary(session=s, today=D)
        assert s.scalar(select(func.count(func.distinct(ChannelDay.day)))) == 31
    assert today.added == 4
    a = next(c for c in listed.channels if c.name == "A")
    assert (a.converted, a.orders_at) == (2, AS_OF)  # kept from the first rollup
    assert listed.computed_at == later


def test_fresh_install_gives_zeros(db: Database) -> None:
    with db.read() as s:
        listed = channel_stats.channel_summary(session=s, today=D)
        trend = channel_stats.channel_trend(ALL, session=s, today=D, days=7)
    assert listed.channels == ()
    assert listed.computed_at is None
    assert [_counts(d) for d in trend.days] == [(0, 0, 0, 0, 0)] * 7
    report = channel_stats.rollup(db, tz=ZONE, now=AS_OF)
    assert report.channels == 0
    with db.read() as s:
        trend = channel_stats.channel_trend(ALL, session=s, today=D, days=7)
        assert channel_stats.computed_at(session=s) == AS_OF
    assert trend.days[-1].customers == 0


def test_the_rollup_is_scheduled(db_url: str) -> None:
    assert CHANNEL_STATS_JOB in registry.scheduled()
    settings = settings_from_mapping(base_config(db_url), environ={})
    assert CHANNEL_STATS_JOB.cron(settings) == "*/10 * * * *"
    rt = Runtime(settings)
    try:
        report = CHANNEL_STATS_JOB.run(rt)
        assert isinstance(report, channel_stats.RollupReport)
        with rt.db.read() as s:
            assert channel_stats.computed_at(session=s) is not None
    finally:
        rt.close()

"""The 概览 page's numbers: KPI cards with 较昨日, the trend, tiers, runs and operations.

Everything comes from the aggregates (channel_days and channel_totals from the rollup,
tier_size_days from the re-tier) and small indexed counts: no pass over customers,
relations or orders per request. A fresh install gives zeros and empty lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.orm import Session

from bot.config import Settings, TieringSettings
from bot.outreach.tier_alerts import VALUE_TIER
from bot.reports import channel_stats, operations, tier_movement
from bot.reports.channel_stats import ALL, DayCounts, Trend
from bot.reports.definitions import Definition, define
from bot.reports.operations import ApiUsage, QueueDepths
from bot.reports.tier_movement import LastRuns, TierSizes

CHURN_TIER = "流失预警"  # the default `churn` dimension's tier


@dataclass(frozen=True)
class Kpi:
    """One card: its value now, yesterday's for 较昨日 (None: not available)."""

    key: str  # the definition's key in bot.reports.definitions
    value: int | None
    previous: int | None

    @property
    def definition(self) -> Definition:
        return define(self.key)

    @property
    def delta(self) -> int | None:
        """较昨日: today's value minus yesterday's (None when either is missing)."""
        if self.value is None or self.previous is None:
            return None
        return self.value - self.previous


@dataclass(frozen=True)
class TierPick:
    """Where a card's tier lives in this config (None when the config has no such tier)."""

    dimension: str
    tier: str


def value_tier(tiering: TieringSettings) -> TierPick | None:
    """The 高价值 tier: in the first dimension that has one (the default `value`)."""
    return _first_with(tiering, VALUE_TIER)


def churn_tier(tiering: TieringSettings) -> TierPick | None:
    """The 流失预警 tier: in the first dimension that has one (the default `churn`)."""
    return _first_with(tiering, CHURN_TIER)


def _first_with(tiering: TieringSettings, tag: str) -> TierPick | None:
    dim = next((d for d in tiering.dimensions if any(t.tag == tag for t in d.tiers)), None)
    return None if dim is None else TierPick(dim.name, tag)


@dataclass(frozen=True)
class Overview:
    """Everything the 概览 page shows."""

    today: date
    customers_total: Kpi
    added_today: Kpi
    lost_by_customer_today: Kpi
    lost_by_staff_today: Kpi
    lost_other_today: Kpi
    net_today: Kpi
    high_value: Kpi
    churn_warning: Kpi
    trend: Trend  # every relation, the last TREND_DAYS days (近7天 is its tail)
    tiers: dict[str, TierSizes]  # per dimension, config order
    last_runs: LastRuns
    queues: QueueDepths
    wecom: tuple[ApiUsage, ...]
    data_as_of: datetime | None  # the channel rollup's time (None: it never ran)

    @property
    def kpis(self) -> tuple[Kpi, ...]:
        return (
            self.customers_total,
            self.added_today,
            self.lost_by_customer_today,
            self.lost_by_staff_today,
            self.lost_other_today,
            self.net_today,
            self.high_value,
            self.churn_warning,
        )


TREND_DAYS = 30


def _tier_kpi(
    key: str, pick: TierPick | None, *, session: Session, today: date, now: TierSizes | None
) -> Kpi:
    if pick is None:
        return Kpi(key, None, None)
    series = tier_movement.size_series(
        pick.dimension, session=session, today=today, days=2, tiers=(pick.tier,)
    )
    value = now.of(pick.tier) if now is not None else 0
    return Kpi(key, value, series.sizes[pick.tier][0])


def _day_kpi(key: str, value: int, prev: DayCounts | None, attr: str) -> Kpi:
    return Kpi(key, value, None if prev is None else int(getattr(prev, attr)))


def overview(*, session: Session, settings: Settings, now: datetime | None = None) -> Overview:
    """Return the 概览 page's numbers as of `now` (default: now) in the [app] timezone."""
    tz = settings.tz
    today = channel_stats.local_today(tz, now)
    trend = channel_stats.channel_trend(ALL, session=session, today=today, days=TREND_DAYS)
    day: DayCounts = trend.days[-1]
    yesterday: DayCounts = trend.days[-2]
    order = {d.name: [t.tag for t in d.tiers] for d in settings.tiering.dimensions}
    sizes = tier_movement.all_tier_sizes(session=session, tiers=order)
    tiers = {name: sizes[name] for name in order if name in sizes}
    high = value_tier(settings.tiering)
    churn = churn_tier(settings.tiering)
    rolled = channel_stats.computed_at(session=session)
    runs = tier_movement.last_run_summary(session=session)
    # Before the first rollup nothing is known: zeros, not yesterday's zeros as deltas.
    prev = None if rolled is None else yesterday
    return Overview(
        today=today,
        customers_total=_day_kpi("customers_total", day.customers, prev, "customers"),
        added_today=_day_kpi("added_today", day.added, prev, "added"),
        lost_by_customer_today=_day_kpi(
            "lost_by_customer_today", day.lost_by_customer, prev, "lost_by_customer"
        ),
        lost_by_staff_today=_day_kpi(
            "lost_by_staff_today", day.lost_by_staff, prev, "lost_by_staff"
        ),
        lost_other_today=_day_kpi("lost_other_today", day.lost_other, prev, "lost_other"),
        net_today=_day_kpi("net_today", day.net, prev, "net"),
        high_value=_tier_kpi(
            "high_value",
            high,
            session=session,
            today=today,
            now=sizes.get(high.dimension) if high else None,
        ),
        churn_warning=_tier_kpi(
            "churn_warning",
            churn,
            session=session,
            today=today,
            now=sizes.get(churn.dimension) if churn else None,
        ),
        trend=trend,
        tiers=tiers,
        last_runs=runs,
        queues=operations.queue_depths(session=session, outbox=runs.outbox),
        wecom=operations.wecom_usage(
            session=session, corp_id=settings.wecom.corp_id, limits=settings.limits
        ),
        data_as_of=rolled,
    )


def trend_tail(trend: Trend, days: int) -> tuple[DayCounts, ...]:
    """Return the last `days` days of a trend (近7天 from the 30-day series)."""
    if days < 1:
        raise ValueError("days must be >= 1")
    return trend.days[-days:] if days <= len(trend.days) else trend.days

"""ROI per tier from a campaign's measured uplift: incremental revenue over cost, with its interval.

    incremental revenue = (revenue per customer, treatment − holdout, 30 days, ITT) × treatment n
    cost                = cost_per_delivery × treatment customers reached
    ROI                 = incremental revenue / cost

Both factors besides the uplift are counts, so the ROI's 95 % interval is the uplift's Welch
interval scaled by the same factor. Only runs whose 30 days have elapsed count, as in the
uplift report; below 30 per arm the uplift has no interval, and so neither has the ROI.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.outreach.report import ALL_TIERS, CampaignResults, MetricResult, Segment
from bot.outreach.uplift import Estimate

REVENUE = "revenue_per_customer"
NOT_ELAPSED = "观察期未满 30 天"
NOT_REACHED = "实验组尚无已触达客户"


@dataclass(frozen=True)
class TierRoi:
    """One tier's ROI and the figures it comes from (None where not computable)."""

    tier: str
    treatment: int  # treatment deliveries in runs whose 30 days have elapsed
    reached: int  # of which reached the customer
    lift: Estimate | None  # yuan per treatment customer
    incremental_revenue: Estimate | None  # yuan
    cost: float | None  # yuan
    roi: Estimate | None
    note: str | None  # why there is no ROI, or a small-sample warning


def _scaled(e: Estimate, by: float) -> Estimate:
    return Estimate(
        e.value * by,
        None if e.low is None else e.low * by,
        None if e.high is None else e.high * by,
    )


def tier_roi(segment: Segment, cost_per_delivery: float) -> TierRoi:
    """Return one segment's ROI at `cost_per_delivery` yuan per reached customer."""
    itt: MetricResult = segment.metric(REVENUE)
    reached_metric: MetricResult = segment.metric(REVENUE, reached=True)
    n = itt.treatment.n
    reached = reached_metric.treatment.n
    if not itt.elapsed:
        return TierRoi(segment.tier, n, reached, None, None, None, None, NOT_ELAPSED)
    lift = itt.absolute
    incremental = None if lift is None else _scaled(lift, n)
    cost = cost_per_delivery * reached
    if lift is None or not reached:
        note = NOT_REACHED if not reached else "对照组或实验组为空"
        return TierRoi(segment.tier, n, reached, lift, incremental, cost or None, None, note)
    roi = _scaled(lift, n / cost)
    small = "样本太少，区间不可信，暂不给出" if itt.too_small else None
    return TierRoi(segment.tier, n, reached, lift, incremental, cost, roi, small)


def roi_by_tier(results: CampaignResults, cost_per_delivery: float | None) -> list[TierRoi]:
    """Return the ROI of every segment (全部 first); empty without a cost_per_delivery."""
    if cost_per_delivery is None:
        return []
    return [tier_roi(s, cost_per_delivery) for s in results.segments]


def headline(rows: list[TierRoi]) -> TierRoi | None:
    """The overall (全部) ROI, the methodology's headline figure."""
    return next((r for r in rows if r.tier == ALL_TIERS), None)

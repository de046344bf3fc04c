"""A campaign's measured uplift: treatment against holdout, per tier at selection and overall.

Intent-to-treat: every treatment delivery counts, reached or not, against every holdout
delivery. All runs of the campaign accumulate (the unit is a delivery: a customer in two
runs counts in each). Outcomes come from paid orders (`orders.status = 'paid'`, so refunded
orders are left out) with `paid_at` in (run as_of, as_of + N days]:

- conversion within 7 / 14 / 30 days: at least one such order;
- revenue per customer: the paid amount within 30 days (0 for non-buyers);
- AOV: among those who bought within 30 days, their average order value (a comparison of
  buyers, so not randomised);
- repurchase rate: at least two paid orders within 30 days.

A group_invite campaign is measured on joining too, first: the share who joined a group of
its group code (`bot.outreach.group_invite.in_code_groups`) within 7 / 14 / 30 days, and
who joined any customer group within 30 days (group_members.joined_at in the window).

A run counts for an N-day metric only once its window has elapsed; a metric no run has
completed yet is reported as 「观察期未满」, never as a low conversion. The aggregation is
set-based SQL returning sufficient statistics (n, sums, sums of squares) per run, tier, arm
and reach; they add up here, and bot.outreach.uplift turns them into intervals.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    and_,
    case,
    cast,
    func,
    literal,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.orm import Session

from bot.db.models import (
    Campaign,
    CampaignDelivery,
    CampaignRun,
    Customer,
    GroupMember,
    Order,
)
from bot.db.types import UTCDateTime, utcnow
from bot.errors import NotFoundError, TagbotError
from bot.outreach import group_broadcast, uplift
from bot.outreach.claims import GROUP_BROADCAST
from bot.outreach.group_invite import EXTERNAL, GroupCode, get_group_code, in_code_groups
from bot.outreach.uplift import Estimate, Moments
from bot.states import DeliveryStatus, RunStatus

WINDOWS = (7, 14, 30)
# Treatment deliveries that reached the customer (a 群发 sent, a follow-up notified, a
# webhook delivered): the "among reached" comparison.
REACHED = (DeliveryStatus.SENT, DeliveryStatus.NOTIFIED, DeliveryStatus.DELIVERED)
# Runs that have not been sent yet measure nothing.
UNSENT_RUNS = (RunStatus.PLANNED, RunStatus.HELD)
NOT_ELAPSED = "观察期未满"
ALL_TIERS = "全部"
NO_TIER = "（无层级）"
METHOD = "区间：比例差用 Newcombe (Wilson) 法，均值差用 Welch t 法"
METHOD_DETAIL = (
    "95% CI. Proportion difference: Newcombe hybrid score (method 10, from Wilson intervals); "
    "relative lift of proportions: Katz log method for the risk ratio; mean difference: Welch t "
    "with Welch-Satterthwaite df; relative lift of means: delta method on the log ratio. "
    "Means get no interval below 30 per arm."
)
REACHED_NOTE = "已触达客户 vs 对照组：触达与否不是随机分配的，仅供参考"
AOV_NOTE = "客单价只比较下单客户，不是随机比较"

Kind = Literal["proportion", "mean"]


@dataclass(frozen=True)
class MetricSpec:
    key: str
    label: str
    kind: Kind
    days: int


JOIN_METRICS = (
    MetricSpec("joined_code_7d", "7 天入群率（本群活码的群）", "proportion", 7),
    MetricSpec("joined_code_14d", "14 天入群率（本群活码的群）", "proportion", 14),
    MetricSpec("joined_code_30d", "30 天入群率（本群活码的群）", "proportion", 30),
)
JOINED_ANY = MetricSpec("joined_any_30d", "30 天入群率（任意客户群）", "proportion", 30)
METRICS = (
    MetricSpec("conversion_7d", "7 天转化率", "proportion", 7),
    MetricSpec("conversion_14d", "14 天转化率", "proportion", 14),
    MetricSpec("conversion_30d", "30 天转化率", "proportion", 30),
    MetricSpec("revenue_per_customer", "人均消费（30 天）", "mean", 30),
    MetricSpec("aov", "客单价（30 天下单客户）", "mean", 30),
    MetricSpec("repurchase_rate", "复购率（30 天 ≥2 单）", "proportion", 30),
)


@dataclass(frozen=True)
class Group:
    """Sufficient statistics of the deliveries of one run × tier × arm × reach (additive)."""

    n: int
    converted: tuple[int, int, int]  # within WINDOWS days
    repeat: int
    revenue: Moments  # per delivery, yuan
    aov: Moments  # per buyer, yuan
    joined_code: tuple[int, int, int] = (0, 0, 0)  # joined a group of the code, WINDOWS days
    joined_any: int = 0  # joined any customer group within 30 days

    def __add__(self, other: Group) -> Group:
        return Group(
            self.n + other.n,
            (
                self.converted[0] + other.converted[0],
                self.converted[1] + other.converted[1],
                self.converted[2] + other.converted[2],
            ),
            self.repeat + other.repeat,
            self.revenue + other.revenue,
            self.aov + other.aov,
            (
                self.joined_code[0] + other.joined_code[0],
                self.joined_code[1] + other.joined_code[1],
                self.joined_code[2] + other.joined_code[2],
            ),
            self.joined_any + other.joined_any,
        )

    def events(self, spec: MetricSpec) -> int:
        """Return the successes of a proportion metric."""
        if spec.key == "repurchase_rate":
            return self.repeat
        if spec.key == JOINED_ANY.key:
            return self.joined_any
        if spec.key.startswith("joined_code_"):
            return self.joined_code[WINDOWS.index(spec.days)]
        return self.converted[WINDOWS.index(spec.days)]

    def moments(self, spec: MetricSpec) -> Moments:
        """Return the sample of a mean metric."""
        return self.aov if spec.key == "aov" else self.revenue


EMPTY = Group(0, (0, 0, 0), 0, Moments(0, 0.0, 0.0), Moments(0, 0.0, 0.0))


@dataclass(frozen=True)
class GroupKey:
    run_id: int
    tier: str | None
    arm: str
    reached: bool


@dataclass(frozen=True)
class ArmValue:
    """One arm of one metric: its size, its rate or mean, and its successes for a rate."""

    n: int
    value: float | None
    events: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "value": self.value, "events": self.events}


@dataclass(frozen=True)
class MetricResult:
    """One metric of one comparison: both arms, the lifts with 95% CIs, or not elapsed yet."""

    spec: MetricSpec
    elapsed: bool
    runs: int  # runs whose window has elapsed and so count
    treatment: ArmValue
    holdout: ArmValue
    absolute: Estimate | None
    relative: Estimate | None  # ratio − 1
    too_small: bool

    def to_json(self) -> dict[str, Any]:
        def est(e: Estimate | None) -> dict[str, Any] | None:
            return None if e is None else {"value": e.value, "low": e.low, "high": e.high}

        return {
            "key": self.spec.key,
            "label": self.spec.label,
            "kind": self.spec.kind,
            "window_days": self.spec.days,
            "elapsed": self.elapsed,
            "status": None if self.elapsed else NOT_ELAPSED,
            "runs": self.runs,
            "treatment": self.treatment.to_json(),
            "holdout": self.holdout.to_json(),
            "absolute_lift": est(self.absolute),
            "relative_lift": est(self.relative),
            "too_small": self.too_small,
        }


@dataclass(frozen=True)
class Segment:
    """The comparisons for one tier at selection (or all tiers)."""

    tier: str
    itt: tuple[MetricResult, ...]
    reached: tuple[MetricResult, ...]
    warning: str | None

    def metric(self, key: str, *, reached: bool = False) -> MetricResult:
        """Return one metric by key."""
        return next(m for m in (self.reached if reached else self.itt) if m.spec.key == key)

    def to_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "warning": self.warning,
            "intent_to_treat": [m.to_json() for m in self.itt],
            "among_reached": {
                "note": REACHED_NOTE,
                "metrics": [m.to_json() for m in self.reached],
            },
        }


@dataclass(frozen=True)
class CampaignResults:
    """A campaign's accumulated results: overall first, then one segment per tier."""

    campaign: str
    action: str
    as_of: datetime
    runs: int  # sent runs counted
    unsent_runs: int
    first_run: datetime | None
    last_run: datetime | None
    segments: tuple[Segment, ...] = field(default=())
    # group_broadcast: its groups by delivery status over all runs (no customer outcomes)
    groups: dict[str, int] | None = None

    def segment(self, tier: str) -> Segment:
        """Return one segment by tier label (ALL_TIERS for the overall one)."""
        return next(s for s in self.segments if s.tier == tier)

    def to_json(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat()

        return {
            "campaign": self.campaign,
            "action": self.action,
            "as_of": self.as_of.isoformat(),
            "runs": self.runs,
            "unsent_runs": self.unsent_runs,
            "first_run": iso(self.first_run),
            "last_run": iso(self.last_run),
            "method": METHOD,
            "method_detail": METHOD_DETAIL,
            "notes": [AOV_NOTE],
            "segments": [s.to_json() for s in self.segments],
            "groups": self.groups,
        }


def campaign_results(
    name: str, *, session: Session, now: datetime | None = None
) -> CampaignResults:
    """Measure a campaign's uplift over all its sent runs, as of `now` (default: now)."""
    now = (now or utcnow()).astimezone(UTC)
    campaign = session.scalar(select(Campaign).where(Campaign.name == name))
    if campaign is None:
        raise NotFoundError(f"没有名为 {name!r} 的活动记录（尚未运行过或名称不对）")
    runs = session.execute(
        select(CampaignRun.id, CampaignRun.as_of, CampaignRun.status)
        .where(CampaignRun.campaign_id == campaign.id)
        .order_by(CampaignRun.as_of, CampaignRun.id)
    ).all()
    sent = [(r.id, r.as_of) for r in runs if r.status not in UNSENT_RUNS]
    groups = _group_stats(session, campaign.id, sent) if sent else {}
    specs = METRICS
    if campaign.action == "group_invite":
        code = _code(session, campaign.group_code)
        if sent:
            groups = _with_joins(groups, _join_stats(session, campaign.id, sent, code))
        # the code's groups are unknown once the code is deleted: any group still counts
        specs = (*(JOIN_METRICS if code is not None else ()), JOINED_ANY, *METRICS)
    as_of = dict(sent)
    elapsed = {
        days: {run for run, start in sent if start + timedelta(days=days) <= now}
        for days in WINDOWS
    }
    tiers = sorted({k.tier for k in groups}, key=lambda t: (t is None, t or ""))
    # a group_broadcast has no customer deliveries: its results are its groups' statuses
    measured = bool(sent) and campaign.action != GROUP_BROADCAST
    segments = [_segment(ALL_TIERS, groups, elapsed, specs)] if measured else []
    if len(tiers) > 1:
        segments += [
            _segment(t or NO_TIER, {k: g for k, g in groups.items() if k.tier == t}, elapsed, specs)
            for t in tiers
        ]
    return CampaignResults(
        groups=(
            group_broadcast.status_counts(session, campaign.id)
            if campaign.action == GROUP_BROADCAST
            else None
        ),
        campaign=campaign.name,
        action=campaign.action,
        as_of=now,
        runs=len(sent),
        unsent_runs=len(runs) - len(sent),
        first_run=min(as_of.values(), default=None),
        last_run=max(as_of.values(), default=None),
        segments=tuple(segments),
    )


def _windows(runs: Sequence[tuple[int, datetime]]) -> Any:
    """Return a CTE of the runs' windows: run_id, start, end_7, end_14, end_30."""
    # The runs' windows as bound values: exact time arithmetic on both backends.
    rows = [
        select(
            literal(run_id, BigInteger).label("run_id"),
            literal(start, UTCDateTime()).label("start"),
            *(
                literal(start + timedelta(days=days), UTCDateTime()).label(f"end_{days}")
                for days in WINDOWS
            ),
        )
        for run_id, start in runs
    ]
    return (rows[0] if len(rows) == 1 else union_all(*rows)).cte("windows")


def _group_stats(
    session: Session, campaign_id: int, runs: Sequence[tuple[int, datetime]]
) -> dict[GroupKey, Group]:
    """Aggregate the campaign's deliveries of these runs in SQL, per run/tier/arm/reach."""
    d = CampaignDelivery.__table__
    o = Order.__table__
    w = _windows(runs)
    fen = type_coerce(o.c.amount, BigInteger)  # Money stores integer fen
    per_delivery = (
        select(
            d.c.run_id,
            d.c.tier,
            d.c.arm,
            d.c.status,
            *(
                func.max(case((o.c.paid_at <= w.c[f"end_{days}"], 1), else_=0)).label(f"c{days}")
                for days in WINDOWS
            ),
            func.count(o.c.id).label("orders"),
            func.coalesce(func.sum(fen), 0).label("fen"),
        )
        .select_from(
            d.join(w, w.c.run_id == d.c.run_id).outerjoin(
                o,
                and_(
                    o.c.customer_id == d.c.customer_id,
                    o.c.status == "paid",
                    o.c.paid_at > w.c.start,
                    o.c.paid_at <= w.c[f"end_{WINDOWS[-1]}"],
                ),
            )
        )
        .where(d.c.campaign_id == campaign_id)
        .group_by(d.c.id, d.c.run_id, d.c.tier, d.c.arm, d.c.status)
        .subquery()
    )
    p = per_delivery.c
    yuan = cast(p.fen, Float) / 100.0
    aov = case((p.orders > 0, yuan / p.orders))  # NULL for non-buyers: count() skips it
    reached = case((and_(p.arm == "treatment", p.status.in_(REACHED)), 1), else_=0)
    query = select(
        p.run_id,
        p.tier,
        p.arm,
        reached.label("reached"),
        func.count().label("n"),
        *(func.sum(p[f"c{days}"]).label(f"c{days}") for days in WINDOWS),
        func.sum(case((p.orders >= 2, 1), else_=0)).label("repeat"),
        func.sum(yuan).label("rev"),
        func.sum(yuan * yuan).label("rev_sq"),
        func.count(aov).label("buyers"),
        func.sum(aov).label("aov"),
        func.sum(aov * aov).label("aov_sq"),
    ).group_by(p.run_id, p.tier, p.arm, reached)
    out: dict[GroupKey, Group] = {}
    for r in session.execute(query):
        key = GroupKey(int(r.run_id), r.tier, str(r.arm), bool(r.reached))
        out[key] = Group(
            n=int(r.n),
            converted=(int(r.c7 or 0), int(r.c14 or 0), int(r.c30 or 0)),
            repeat=int(r.repeat or 0),
            revenue=Moments(int(r.n), float(r.rev or 0), float(r.rev_sq or 0)),
            aov=Moments(int(r.buyers), float(r.aov or 0), float(r.aov_sq or 0)),
        )
    return out


def _code(session: Session, name: str | None) -> GroupCode | None:
    if not name:
        return None
    try:
        return get_group_code(session, name)
    except TagbotError:
        return None


JoinCounts = tuple[tuple[int, int, int], int]


def _join_stats(
    session: Session,
    campaign_id: int,
    runs: Sequence[tuple[int, datetime]],
    code: GroupCode | None,
) -> dict[GroupKey, JoinCounts]:
    """Count, per run/tier/arm/reach, the deliveries whose customer joined a group after."""
    d = CampaignDelivery.__table__
    c = Customer.__table__  # a stay is a customer's by member_userid, as in the tier metrics
    w = _windows(runs)

    def joined(end: Any, *extra: ColumnElement[bool]) -> ColumnElement[int]:
        stay = (
            select(GroupMember.id)
            .where(
                GroupMember.member_userid == c.c.external_userid,
                GroupMember.member_type == EXTERNAL,
                GroupMember.joined_at > w.c.start,
                GroupMember.joined_at <= end,
                *extra,
            )
            .exists()
        )
        return case((stay, 1), else_=0)

    never: ColumnElement[int] = literal(0)
    per_delivery = (
        select(
            d.c.run_id,
            d.c.tier,
            d.c.arm,
            d.c.status,
            *(
                (
                    joined(w.c[f"end_{days}"], in_code_groups(code)) if code is not None else never
                ).label(f"j{days}")
                for days in WINDOWS
            ),
            joined(w.c[f"end_{WINDOWS[-1]}"]).label("jany"),
        )
        .select_from(d.join(w, w.c.run_id == d.c.run_id).join(c, c.c.id == d.c.customer_id))
        .where(d.c.campaign_id == campaign_id)
        .subquery()
    )
    p = per_delivery.c
    reached = case((and_(p.arm == "treatment", p.status.in_(REACHED)), 1), else_=0)
    query = select(
        p.run_id,
        p.tier,
        p.arm,
        reached.label("reached"),
        *(func.sum(p[f"j{days}"]).label(f"j{days}") for days in WINDOWS),
        func.sum(p.jany).label("jany"),
    ).group_by(p.run_id, p.tier, p.arm, reached)
    return {
        GroupKey(int(r.run_id), r.tier, str(r.arm), bool(r.reached)): (
            (int(r.j7 or 0), int(r.j14 or 0), int(r.j30 or 0)),
            int(r.jany or 0),
        )
        for r in session.execute(query)
    }


def _with_joins(
    groups: dict[GroupKey, Group], joins: dict[GroupKey, JoinCounts]
) -> dict[GroupKey, Group]:
    return {
        k: replace(g, joined_code=joins[k][0], joined_any=joins[k][1]) if k in joins else g
        for k, g in groups.items()
    }


def _total(groups: Iterable[Group]) -> Group:
    total = EMPTY
    for g in groups:
        total = total + g
    return total


def _segment(
    tier: str,
    groups: dict[GroupKey, Group],
    elapsed: dict[int, set[int]],
    specs: Sequence[MetricSpec] = METRICS,
) -> Segment:
    def compare(reached_only: bool) -> tuple[MetricResult, ...]:
        results = []
        for spec in specs:
            runs = elapsed[spec.days]
            mine = {k: g for k, g in groups.items() if k.run_id in runs}
            treated = _total(
                g
                for k, g in mine.items()
                if k.arm == "treatment" and (k.reached or not reached_only)
            )
            holdout = _total(g for k, g in mine.items() if k.arm == "holdout")
            results.append(_metric(spec, len(runs), treated, holdout))
        return tuple(results)

    itt = compare(reached_only=False)
    return Segment(tier, itt, compare(reached_only=True), _warning(itt, groups))


Arms = tuple[ArmValue, ArmValue]
Lifts = tuple[Estimate | None, Estimate | None]


def _metric(spec: MetricSpec, runs: int, t: Group, h: Group) -> MetricResult:
    if not runs:
        none = ArmValue(0, None)
        return MetricResult(spec, False, 0, none, none, None, None, too_small=False)
    compare = _proportions if spec.kind == "proportion" else _means
    (t_arm, h_arm), (absolute, relative), small = compare(spec, t, h)
    return MetricResult(spec, True, runs, t_arm, h_arm, absolute, relative, small)


def _proportions(spec: MetricSpec, t: Group, h: Group) -> tuple[Arms, Lifts, bool]:
    xt, xh = t.events(spec), h.events(spec)
    arms = (
        ArmValue(t.n, xt / t.n if t.n else None, xt),
        ArmValue(h.n, xh / h.n if h.n else None, xh),
    )
    if not (t.n and h.n):
        return arms, (None, None), True
    ratio = uplift.proportion_ratio(xt, t.n, xh, h.n)
    lifts = (
        uplift.proportion_difference(xt, t.n, xh, h.n),
        None if ratio is None else ratio.shifted(-1),
    )
    return arms, lifts, uplift.too_small(t.n, h.n, xt, xh)


def _means(spec: MetricSpec, t: Group, h: Group) -> tuple[Arms, Lifts, bool]:
    mt, mh = t.moments(spec), h.moments(spec)
    arms = (ArmValue(mt.n, mt.mean), ArmValue(mh.n, mh.mean))
    if not (mt.n and mh.n):
        return arms, (None, None), True
    difference: Estimate = uplift.mean_difference(mt, mh)
    ratio = uplift.mean_ratio(mt, mh)
    small = uplift.too_small(mt.n, mh.n)
    if small:
        # Money is skewed: below 30 per arm Welch's t is not to be trusted (and an arm of a
        # few non-buyers has zero variance, which makes a wide effect look certain).
        difference = Estimate(difference.value, None, None)
        ratio = None if ratio is None else Estimate(ratio.value, None, None)
    return arms, (difference, None if ratio is None else ratio.shifted(-1)), small


def _warning(itt: tuple[MetricResult, ...], groups: dict[GroupKey, Group]) -> str | None:
    """Warn on the longest conversion window that has elapsed, else on the arm sizes."""
    # a group_invite campaign's success is joining (its metrics come first)
    prefix = "joined_" if itt and itt[0].spec.key.startswith("joined_") else "conversion_"
    done = [
        m
        for m in itt
        if m.spec.key.startswith(prefix) and m.spec.key != JOINED_ANY.key and m.elapsed
    ]
    if done:
        m = done[-1]
        if not m.too_small:
            return None
        return uplift.too_small_warning(
            m.treatment.n, m.holdout.n, m.treatment.events or 0, m.holdout.events or 0
        )
    nt = sum(g.n for k, g in groups.items() if k.arm == "treatment")
    nh = sum(g.n for k, g in groups.items() if k.arm == "holdout")
    if uplift.too_small(nt, nh):
        return uplift.too_small_warning(nt, nh, None, None)
    return None

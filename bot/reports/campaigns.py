"""The 触达 pages' reads: campaigns with their last run, a campaign's runs, one run's deliveries.

Per staff member the run's treatment deliveries are counted by status, with the failure
WeCom gave for their task; per customer the deliveries are listed a page at a time.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import bot.reports.campaign_definitions  # noqa: F401  (registers the ⓘ definitions)
from bot.config import CampaignSettings
from bot.db.models import Campaign, CampaignDelivery, CampaignRun, CampaignTask, Customer, Staff

RUN_PAGE = 50
RUNS_SHOWN = 20

ACTION_LABELS = {
    "group_message": "客户群发",
    "group_invite": "入群邀请",
    "group_broadcast": "客户群群发",
    "follow_up": "员工跟进提醒",
    "webhook": "Webhook 推送",
}
RUN_STATUS_LABELS = {
    "planned": "已生成名单",
    "held": "免打扰时段，稍后发送",
    "sending": "发送中",
    "done": "已完成",
    "failed": "失败",
}
DELIVERY_LABELS = {
    "planned": "排队中",
    "queued": "排队中",
    "created": "待员工确认",
    "sent": "已送达",
    "notified": "已通知员工",
    "delivered": "已推送",
    "not_friend": "已不是好友",
    "over_quota": "客户接收达上限",
    "unconfirmed": "员工未确认",
    "failed": "发送失败",
    "holdout": "对照组（不触达）",
}
SENT = frozenset({"sent", "notified", "delivered"})
WAITING = frozenset({"planned", "queued", "created"})
NOT_SENT = frozenset({"not_friend", "over_quota", "unconfirmed", "failed"})
TRIGGER_LABELS = {"manual": "手动", "schedule": "定时"}


@dataclass(frozen=True)
class RunSummary:
    """One run's row: when, how it was triggered, where it stands, its counts at planning."""

    id: int
    campaign: str
    action: str
    trigger: str
    status: str
    as_of: datetime
    started_at: datetime
    finished_at: datetime | None
    audience: int
    treatment: int
    holdout: int
    capped: int
    cooling: int
    error: str | None

    @property
    def status_label(self) -> str:
        return RUN_STATUS_LABELS.get(self.status, self.status)

    @property
    def trigger_label(self) -> str:
        return TRIGGER_LABELS.get(self.trigger, self.trigger)


@dataclass(frozen=True)
class CampaignRow:
    """A configured campaign and its latest run (None: never run)."""

    config: CampaignSettings
    last_run: RunSummary | None

    @property
    def action_label(self) -> str:
        return ACTION_LABELS.get(self.config.action, self.config.action)

    @property
    def audience_label(self) -> str:
        c = self.config
        if c.action == "group_broadcast":
            parts = [f"群活码「{c.group_code}」的群"] if c.group_code else []
            if c.tiers:
                parts.append(f"{c.dimension}：{'、'.join(c.tiers)} ≥ {c.min_share}% 的群")
            return "客户群：" + "，".join(parts)
        if c.action == "group_invite":
            who = f"新进入 {c.on_enter}" if c.on_enter else "、".join(c.tiers)
            return f"{c.dimension}：{who}，邀请加入群活码「{c.group_code}」的群"
        if self.config.on_enter:
            return f"{self.config.dimension}：新进入 {self.config.on_enter}"
        return f"{self.config.dimension}：{'、'.join(self.config.tiers)}"


def _summary(run: CampaignRun, name: str) -> RunSummary:
    return RunSummary(
        id=run.id,
        campaign=name,
        action=run.action,
        trigger=run.trigger,
        status=run.status,
        as_of=run.as_of,
        started_at=run.started_at,
        finished_at=run.finished_at,
        audience=run.audience,
        treatment=run.treatment,
        holdout=run.holdout,
        capped=run.capped,
        cooling=run.cooling,
        error=run.error,
    )


def campaign_rows(campaigns: Sequence[CampaignSettings], *, session: Session) -> list[CampaignRow]:
    """Return the configured campaigns, in config order, each with its latest run."""
    latest = select(func.max(CampaignRun.id)).group_by(CampaignRun.campaign_id)
    rows = session.execute(
        select(Campaign.name, CampaignRun)
        .join(CampaignRun, CampaignRun.campaign_id == Campaign.id)
        .where(CampaignRun.id.in_(latest))
    ).all()
    last = {str(name): _summary(run, str(name)) for name, run in rows}
    return [CampaignRow(c, last.get(c.name)) for c in campaigns]


def recent_runs(name: str, *, session: Session, limit: int = RUNS_SHOWN) -> list[RunSummary]:
    """Return the campaign's latest runs, newest first."""
    runs = session.scalars(
        select(CampaignRun)
        .join(Campaign, Campaign.id == CampaignRun.campaign_id)
        .where(Campaign.name == name)
        .order_by(CampaignRun.id.desc())
        .limit(limit)
    )
    return [_summary(r, name) for r in runs]


def run_summary(run_id: int, *, session: Session) -> RunSummary | None:
    """Return one run (None when there is no such run)."""
    row = session.execute(
        select(CampaignRun, Campaign.name)
        .join(Campaign, Campaign.id == CampaignRun.campaign_id)
        .where(CampaignRun.id == run_id)
    ).first()
    return None if row is None else _summary(row[0], str(row[1]))


@dataclass(frozen=True)
class StaffResult:
    """One staff member's part of a run: deliveries by status and their tasks' failures."""

    userid: str
    name: str
    statuses: Mapping[str, int]
    task_statuses: tuple[str, ...]
    errors: tuple[str, ...]  # WeCom's failure reasons for this member's tasks

    @property
    def expected(self) -> int:
        return sum(self.statuses.values())

    @property
    def sent(self) -> int:
        return sum(n for s, n in self.statuses.items() if s in SENT)

    @property
    def waiting(self) -> int:
        return sum(n for s, n in self.statuses.items() if s in WAITING)

    @property
    def not_sent(self) -> int:
        return sum(n for s, n in self.statuses.items() if s in NOT_SENT)

    @property
    def state(self) -> str:
        """发送状态 as operators read it on a 群发 page."""
        if self.errors and not self.sent:
            return "发送失败"
        if self.sent:
            return "已发送"
        if self.statuses.get("unconfirmed"):
            return "未发送（员工未确认）"
        if self.statuses.get("created"):
            return "待员工确认"
        return "排队中"

    def reasons(self) -> list[tuple[str, int]]:
        """The not-sent deliveries by reason label, largest first."""
        found = Counter(
            {DELIVERY_LABELS.get(s, s): n for s, n in self.statuses.items() if s in NOT_SENT}
        )
        return found.most_common()


@dataclass(frozen=True)
class DeliveryRow:
    """One customer of a run: arm, tier at selection, staff, delivery state."""

    external_userid: str
    name: str
    arm: str
    tier: str | None
    staff_userid: str | None
    staff_name: str
    status: str
    sent_at: datetime | None

    @property
    def status_label(self) -> str:
        return DELIVERY_LABELS.get(self.status, self.status)


@dataclass(frozen=True)
class RunDetail:
    """A run's page: per staff results, totals by status, and one page of customers."""

    run: RunSummary
    staff: tuple[StaffResult, ...]
    totals: Mapping[str, int]  # treatment deliveries by status
    holdout: int
    customers: tuple[DeliveryRow, ...]
    page: int
    pages: int
    shown_status: str | None = None
    statuses: tuple[str, ...] = field(default=())  # every status present, for the filter

    @property
    def sent(self) -> int:
        return sum(n for s, n in self.totals.items() if s in SENT)

    @property
    def waiting(self) -> int:
        return sum(n for s, n in self.totals.items() if s in WAITING)

    @property
    def not_sent(self) -> int:
        return sum(n for s, n in self.totals.items() if s in NOT_SENT)

    @property
    def staff_sent(self) -> int:
        return sum(1 for s in self.staff if s.sent)

    @property
    def staff_not_sent(self) -> int:
        return sum(1 for s in self.staff if not s.sent)


def _staff_names(session: Session, userids: set[str], names: Mapping[str, str]) -> dict[str, str]:
    stored = dict(
        session.execute(select(Staff.userid, Staff.name).where(Staff.userid.in_(userids))).all()
    )
    return {u: names.get(u.lower()) or stored.get(u) or u for u in userids}


def run_detail(
    run_id: int,
    *,
    session: Session,
    page: int = 1,
    status: str | None = None,
    staff_names: Mapping[str, str] | None = None,
    per_page: int = RUN_PAGE,
) -> RunDetail | None:
    """Return one run's results per staff and the `page`-th page of its customers."""
    run = run_summary(run_id, session=session)
    if run is None:
        return None
    d = CampaignDelivery
    counts = session.execute(
        select(d.staff_userid, d.arm, d.status, func.count())
        .where(d.run_id == run_id)
        .group_by(d.staff_userid, d.arm, d.status)
    ).all()
    per_staff: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    holdout = 0
    present: set[str] = set()
    for userid, arm, state, n in counts:
        present.add(str(state))
        if arm != "treatment":
            holdout += int(n)
            continue
        per_staff[userid or ""][str(state)] += int(n)
        totals[str(state)] += int(n)
    tasks = session.execute(
        select(CampaignTask.sender, CampaignTask.status, CampaignTask.last_error)
        .where(CampaignTask.run_id == run_id)
        .order_by(CampaignTask.sender, CampaignTask.batch)
    ).all()
    task_status: dict[str, list[str]] = defaultdict(list)
    errors: dict[str, list[str]] = defaultdict(list)
    for sender, state, error in tasks:
        task_status[sender].append(state)
        if error:
            errors[sender].append(error)
    names = _staff_names(session, {u for u in per_staff if u}, staff_names or {})
    staff = tuple(
        StaffResult(
            userid=u,
            name=names.get(u, u) if u else "（无员工）",
            statuses=dict(per_staff[u]),
            task_statuses=tuple(task_status.get(u, ())),
            errors=tuple(errors.get(u, ())),
        )
        for u in sorted(per_staff)
    )
    where = [d.run_id == run_id]
    if status:
        where.append(d.status == status)
    total = int(session.scalar(select(func.count()).select_from(d).where(*where)) or 0)
    pages = max(1, -(-total // per_page))
    page = min(max(page, 1), pages)
    rows = session.execute(
        select(
            Customer.external_userid,
            Customer.name,
            d.arm,
            d.tier,
            d.staff_userid,
            d.status,
            d.sent_at,
        )
        .select_from(d)
        .join(Customer, Customer.id == d.customer_id)
        .where(*where)
        .order_by(d.arm.desc(), d.staff_userid, Customer.external_userid)
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    row_names = _staff_names(
        session, {r.staff_userid for r in rows if r.staff_userid}, staff_names or {}
    )
    customers = tuple(
        DeliveryRow(
            external_userid=r.external_userid,
            name=r.name,
            arm=r.arm,
            tier=r.tier,
            staff_userid=r.staff_userid,
            staff_name=row_names.get(r.staff_userid, "") if r.staff_userid else "",
            status=r.status,
            sent_at=r.sent_at,
        )
        for r in rows
    )
    return RunDetail(
        run=run,
        staff=staff,
        totals=dict(totals),
        holdout=holdout,
        customers=customers,
        page=page,
        pages=pages,
        shown_status=status,
        statuses=tuple(s for s in DELIVERY_LABELS if s in present),
    )

"""Plan one campaign run: the audience, exclusions, the holdout — recorded in one write.

Order (OUTREACH.md step 1): candidates (members now or on_enter entries, see
`bot.outreach.audience`), narrowed by `when` → the audience; customers with no active
relation are unreachable (a webhook reaches beyond WeCom, so it keeps them, with no
staff member); a group_invite leaves out who is already in one of its code's groups;
then cooling (a delivery of this campaign, either arm, in a run whose
as_of lies within `cooldown_days`), then capped (campaign messages across campaigns:
one per local day, `max_per_7d`, `max_per_30d`; a message is a treatment delivery of a
group_message, group_invite or webhook run that reached the customer (not failed, not_friend,
over_quota or unconfirmed); follow_up campaigns send customers
nothing and are not capped), and the rest split by a stable hash of (campaign name,
external_userid): holdout when it falls under `holdout_pct` %, treatment otherwise.

Unless dry_run the plan is recorded in one `db.write()`: the campaigns row (upserted),
a campaign_runs row `planned` with the counts and `transitions_upto`, and one
campaign_deliveries row per treatment (status planned) and holdout (status holdout)
customer. Planning holds the `outreach-plan` lease, so two runs never count caps from
the same state.

A group_broadcast selects customer groups instead (`bot.outreach.group_broadcast`): no
customers, no caps (WeCom keeps each group's own quota); cooling and the holdout by group.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, func, insert, select
from sqlalchemy.orm import Session

from bot import leases
from bot.campaign_checks import parse_when
from bot.config import CampaignSettings, Settings
from bot.db import Database
from bot.db.models import Campaign, CampaignDelivery, CampaignRun
from bot.errors import TagbotError, ValidationError
from bot.outreach import group_broadcast
from bot.outreach.audience import (
    Candidate,
    Window,
    candidates_query,
    narrow,
    read_candidates,
    transition_window,
)
from bot.outreach.claims import GROUP_BROADCAST
from bot.outreach.group_broadcast import ChatPlan, cooling_groups, select_groups
from bot.outreach.group_invite import GroupCode, already_in, get_group_code
from bot.states import DeliveryStatus, RunStatus

Trigger = Literal["manual", "schedule"]
LEASE = "outreach-plan"
LEASE_TTL = 600.0  # longer than any plan; a holder that died frees it after this
MESSAGE_ACTIONS = ("group_message", "group_invite", "webhook")  # reach the customer: capped
# Deliveries that never reached the customer do not count against caps: failed, not a
# friend, over WeCom's quota (another 群发 got there first), never confirmed by the member.
NOT_RECEIVED = (
    DeliveryStatus.FAILED,
    DeliveryStatus.NOT_FRIEND,
    DeliveryStatus.OVER_QUOTA,
    DeliveryStatus.UNCONFIRMED,
)
HASH_BUCKETS = 10_000


class OutreachBusyError(TagbotError):
    """Another campaign is being planned (its caps must be counted first)."""


def holdout_bucket(campaign: str, external_userid: str) -> int:
    """Return the customer's stable bucket in [0, 10000) for this campaign."""
    digest = hashlib.sha256(f"{campaign}\n{external_userid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % HASH_BUCKETS


def in_holdout(campaign: str, external_userid: str, holdout_pct: int) -> bool:
    """Tell whether the customer falls in the campaign's holdout (same on every run)."""
    return holdout_bucket(campaign, external_userid) < holdout_pct * (HASH_BUCKETS // 100)


@dataclass(frozen=True)
class StaffShare:
    """One staff member's part of a plan (the dry run prints these)."""

    staff_userid: str | None
    treatment: tuple[Candidate, ...] = ()
    holdout: tuple[Candidate, ...] = ()
    capped: tuple[Candidate, ...] = ()
    cooling: tuple[Candidate, ...] = ()


@dataclass
class RunPlan:
    """Where each customer of one run went; `run_id` is None for a dry run."""

    campaign: str
    action: str
    trigger: str
    as_of: datetime
    dry_run: bool
    audience: int = 0  # after `when`, before any exclusion
    treatment: list[Candidate] = field(default_factory=list)
    holdout: list[Candidate] = field(default_factory=list)
    capped: list[Candidate] = field(default_factory=list)
    cooling: list[Candidate] = field(default_factory=list)
    unreachable: list[Candidate] = field(default_factory=list)  # no active relation
    # group_invite: already in one of the code's groups, so not invited
    in_group: list[Candidate] = field(default_factory=list)
    # group_broadcast: the groups instead of customers (the customer lists stay empty)
    chats: ChatPlan | None = None
    transitions_upto: int | None = None
    run_id: int | None = None
    status: str | None = None  # the run's status once dispatched (planned, held, done, …)

    def by_staff(self) -> list[StaffShare]:
        """Return each staff member's treatment, holdout, capped and cooling customers."""
        parts: dict[str | None, dict[str, list[Candidate]]] = defaultdict(
            lambda: {"treatment": [], "holdout": [], "capped": [], "cooling": []}
        )
        for arm in ("treatment", "holdout", "capped", "cooling"):
            for c in getattr(self, arm):
                parts[c.staff_userid][arm].append(c)
        return [
            StaffShare(
                userid,
                *(tuple(sorted(lists[a], key=lambda c: c.external_userid)) for a in lists),
            )
            for userid, lists in sorted(parts.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
        ]


def _local_day(as_of: datetime, tz: str) -> tuple[datetime, datetime]:
    local = as_of.astimezone(ZoneInfo(tz))
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def _in_candidates(ids: Sequence[int]) -> Iterable[list[int]]:
    ordered = sorted(ids)
    for i in range(0, len(ordered), 5000):  # bound each IN list
        yield ordered[i : i + 5000]


def cooling_ids(
    session: Session, campaign: str, ids: Sequence[int], *, as_of: datetime, days: int
) -> set[int]:
    """Return the customers with a delivery of this campaign within `days` of as_of."""
    if days <= 0:
        return set()
    since = as_of - timedelta(days=days)
    out: set[int] = set()
    for chunk in _in_candidates(ids):
        out.update(
            session.scalars(
                select(CampaignDelivery.customer_id)
                .join(CampaignRun, CampaignRun.id == CampaignDelivery.run_id)
                .join(Campaign, Campaign.id == CampaignDelivery.campaign_id)
                .where(
                    Campaign.name == campaign,
                    CampaignRun.as_of > since,
                    CampaignDelivery.customer_id.in_(chunk),
                )
                .distinct()
            )
        )
    return out


def _messages(ids: list[int]) -> Select[int, int]:
    return (
        select(CampaignDelivery.customer_id, func.count())
        .join(CampaignRun, CampaignRun.id == CampaignDelivery.run_id)
        .where(
            CampaignDelivery.arm == "treatment",
            CampaignRun.action.in_(MESSAGE_ACTIONS),
            CampaignDelivery.status.not_in(NOT_RECEIVED),
            CampaignDelivery.customer_id.in_(ids),
        )
        .group_by(CampaignDelivery.customer_id)
    )


def capped_ids(
    session: Session,
    ids: Sequence[int],
    *,
    as_of: datetime,
    tz: str,
    max_per_7d: int | None,
    max_per_30d: int | None,
) -> set[int]:
    """Return the customers at a cap: a message today (local day), or 7/30-day limits."""
    day_start, day_end = _local_day(as_of, tz)
    limits: list[tuple[int, ColumnElement[bool]]] = [
        (1, and_(CampaignRun.as_of >= day_start, CampaignRun.as_of < day_end))
    ]
    for limit, days in ((max_per_7d, 7), (max_per_30d, 30)):
        if limit is not None:
            limits.append((limit, CampaignRun.as_of > as_of - timedelta(days=days)))
    out: set[int] = set()
    for chunk in _in_candidates(ids):
        for limit, window in limits:
            counts = session.execute(_messages(chunk).where(window)).all()
            out.update(cid for cid, n in counts if n >= limit)
    return out


def plan_run(
    campaign: CampaignSettings,
    *,
    db: Database,
    settings: Settings,
    as_of: datetime,
    trigger: Trigger = "manual",
    dry_run: bool = False,
    wait: float = 60.0,
) -> RunPlan:
    """Select, exclude and split one run's audience; unless dry_run, record it (one write)."""
    if as_of.tzinfo is None:
        raise ValidationError("as_of must be an aware datetime")
    if dry_run:
        return _plan(campaign, db=db, settings=settings, as_of=as_of, trigger=trigger, dry_run=True)
    with leases.holding(db, LEASE, leases.new_owner(), LEASE_TTL, wait=wait) as held:
        if not held:
            raise OutreachBusyError(
                "另一个触达活动正在生成名单，请稍后再试 / another campaign is being planned"
            )
        return _plan(
            campaign, db=db, settings=settings, as_of=as_of, trigger=trigger, dry_run=False
        )


def _plan(
    campaign: CampaignSettings,
    *,
    db: Database,
    settings: Settings,
    as_of: datetime,
    trigger: str,
    dry_run: bool,
) -> RunPlan:
    if campaign.action == GROUP_BROADCAST:
        return _plan_groups(campaign, db=db, as_of=as_of, trigger=trigger, dry_run=dry_run)
    tz = settings.app.timezone
    expr = (
        parse_when(campaign.when, settings.tiering.dimensions, key="when")
        if campaign.when
        else None
    )
    plan = RunPlan(campaign.name, campaign.action, trigger, as_of, dry_run)
    window: Window | None = None
    code: GroupCode | None = None
    with db.read() as session:
        if campaign.action == "group_invite":
            code = get_group_code(session, campaign.group_code or "")  # unknown: a clear error
        if campaign.on_enter is not None:
            window = transition_window(session, campaign.name)
            plan.transitions_upto = window.upto
        query = candidates_query(
            campaign.dimension, tiers=campaign.tiers, on_enter=campaign.on_enter, window=window
        )
        found = read_candidates(session, query)
    if expr is not None and found:
        keep = narrow(db, expr, list(found), as_of=as_of, tz=tz)
        found = {cid: c for cid, c in found.items() if cid in keep}
    plan.audience = len(found)
    reachable: dict[int, Candidate] = {}
    for cid, c in found.items():
        if c.staff_userid is None and campaign.action != "webhook":
            plan.unreachable.append(c)
        else:
            reachable[cid] = c
    if code is not None and reachable:
        with db.read() as session:
            joined = already_in(session, code, list(reachable))
        plan.in_group = [reachable.pop(cid) for cid in sorted(joined)]
    with db.read() as session:
        cooling = cooling_ids(
            session, campaign.name, list(reachable), as_of=as_of, days=campaign.cooldown_days
        )
        rest = [cid for cid in reachable if cid not in cooling]
        capped = (
            capped_ids(
                session,
                rest,
                as_of=as_of,
                tz=tz,
                max_per_7d=settings.outreach.max_per_7d,
                max_per_30d=settings.outreach.max_per_30d,
            )
            if campaign.action in MESSAGE_ACTIONS
            else set()
        )
    for cid in sorted(reachable):
        c = reachable[cid]
        if cid in cooling:
            plan.cooling.append(c)
        elif cid in capped:
            plan.capped.append(c)
        elif in_holdout(campaign.name, c.external_userid, campaign.holdout_pct):
            plan.holdout.append(c)
        else:
            plan.treatment.append(c)
    if not dry_run:
        plan.run_id = record(campaign, plan, db=db)
    return plan


def _plan_groups(
    campaign: CampaignSettings, *, db: Database, as_of: datetime, trigger: str, dry_run: bool
) -> RunPlan:
    """Select, exclude and split a group_broadcast run's groups; unless dry_run, record it."""
    chats = ChatPlan()
    plan = RunPlan(campaign.name, campaign.action, trigger, as_of, dry_run, chats=chats)
    with db.read() as session:
        found = select_groups(session, campaign)  # an unknown group code: a clear error
        cooling = cooling_groups(
            session,
            campaign.name,
            [t.group_chat_id for t in found],
            as_of=as_of,
            days=campaign.cooldown_days,
        )
    plan.audience = len(found)
    for target in found:
        if target.group_chat_id in cooling:
            chats.cooling.append(target)
        elif in_holdout(campaign.name, target.chat_id, campaign.holdout_pct):
            chats.holdout.append(target)
        else:
            chats.treatment.append(target)
    if not dry_run:
        plan.run_id = record(campaign, plan, db=db)
    return plan


def record(campaign: CampaignSettings, plan: RunPlan, *, db: Database) -> int:
    """Write the campaigns row, the planned run and its deliveries in one transaction."""
    with db.write() as session:
        row = session.scalar(select(Campaign).where(Campaign.name == campaign.name))
        if row is None:
            row = Campaign(name=campaign.name)
            session.add(row)
        row.action = campaign.action
        row.dimension = campaign.dimension
        row.group_code = campaign.group_code
        session.flush()
        run = CampaignRun(
            campaign_id=row.id,
            action=campaign.action,
            trigger=plan.trigger,
            status=RunStatus.PLANNED,
            as_of=plan.as_of,
            transitions_upto=plan.transitions_upto,
            audience=plan.audience,
            treatment=len(plan.treatment),
            holdout=len(plan.holdout),
            capped=len(plan.capped),
            cooling=len(plan.cooling),
        )
        if plan.chats is not None:  # group_broadcast: the counts are groups
            run.treatment = len(plan.chats.treatment)
            run.holdout = len(plan.chats.holdout)
            run.cooling = len(plan.chats.cooling)
        session.add(run)
        session.flush()
        if plan.chats is not None:
            group_broadcast.record(session, run, plan.chats)
            return run.id
        rows = [
            {
                "run_id": run.id,
                "campaign_id": row.id,
                "customer_id": c.customer_id,
                "arm": arm,
                "tier": c.tier,
                "staff_userid": c.staff_userid,
                "status": DeliveryStatus.PLANNED if arm == "treatment" else DeliveryStatus.HOLDOUT,
            }
            for arm, members in (("treatment", plan.treatment), ("holdout", plan.holdout))
            for c in members
        ]
        if rows:
            session.execute(insert(CampaignDelivery), rows)
        return run.id

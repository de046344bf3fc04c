"""group_broadcast campaigns: a 群发 to customer groups, sent by each group's owner.

add_msg_template with chat_type "group" takes a sender (required: the owner) and up to
2,000 chat ids (`chat_id_list`); like a customer 群发 it is sent only once the owner
confirms, and its results come per group from get_groupmsg_send_result (`chat_id`).
https://developer.work.weixin.qq.com/document/path/92135

The audience is groups, not customers: the groups of a group live code (`group_code`),
and/or the groups whose current customer members are at least `min_share` % in the
campaign's tiers. Groups are held out by a stable hash of (campaign, chat_id) like
customers, and a group this campaign selected within `cooldown_days` is cooling. Each
selected group is a campaign_group_deliveries row, recorded with the run before any call.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, insert, or_, select, update
from sqlalchemy.orm import Session, aliased

from bot.config import CampaignSettings
from bot.db.models import (
    Campaign,
    CampaignGroupDelivery,
    CampaignRun,
    Customer,
    GroupChat,
    GroupMember,
    TierAssignment,
)
from bot.outreach.claims import GROUP_BROADCAST
from bot.outreach.group_invite import EXTERNAL, GroupCode, get_group_code
from bot.outreach.task_plan import new_task
from bot.states import DeliveryStatus
from bot.wecom_limits import MSG_TEMPLATE_CHATS_MAX

TextFor = Callable[[str], str]  # sender -> the task's text


@dataclass(frozen=True)
class ChatTarget:
    """One customer group a run selected, with the share of its members in the tiers."""

    group_chat_id: int
    chat_id: str
    name: str
    owner_userid: str
    members: int  # current customer (external) members
    in_tiers: int  # of them, in the campaign's tiers (members when no tiers are given)


@dataclass
class ChatPlan:
    """Where each selected group of one run went."""

    treatment: list[ChatTarget] = field(default_factory=list)
    holdout: list[ChatTarget] = field(default_factory=list)
    cooling: list[ChatTarget] = field(default_factory=list)

    @property
    def selected(self) -> int:
        return len(self.treatment) + len(self.holdout) + len(self.cooling)


def _code_groups(code: GroupCode) -> ColumnElement[bool]:
    """Groups the code leads to: its chat ids, and groups someone joined through it."""
    stay = aliased(GroupMember)  # not the selection's outer-joined members
    via_code = (
        select(stay.id)
        .where(stay.group_chat_id == GroupChat.id, stay.channel_id == code.channel_id)
        .exists()
    )
    if code.group_chat_ids:
        return or_(GroupChat.id.in_(list(code.group_chat_ids)), via_code)
    return via_code


def _selection(
    campaign: CampaignSettings, code: GroupCode | None
) -> Select[int, str, str, str, int, Any]:
    current = and_(
        GroupMember.group_chat_id == GroupChat.id,
        GroupMember.member_type == EXTERNAL,
        GroupMember.left_at.is_(None),
    )
    in_tiers = (
        case(
            (
                # a stay is a customer's by member_userid, as in the tier metrics
                select(TierAssignment.customer_id)
                .join(Customer, Customer.id == TierAssignment.customer_id)
                .where(
                    Customer.external_userid == GroupMember.member_userid,
                    TierAssignment.dimension == campaign.dimension,
                    TierAssignment.tier.in_(list(campaign.tiers)),
                )
                .exists(),
                1,
            ),
            else_=0,
        )
        if campaign.tiers
        else 1
    )
    members = func.count(GroupMember.id)
    hits = func.coalesce(func.sum(in_tiers), 0)
    query = (
        select(
            GroupChat.id, GroupChat.chat_id, GroupChat.name, GroupChat.owner_userid, members, hits
        )
        .select_from(GroupChat)
        .outerjoin(GroupMember, current)
        .where(GroupChat.dismissed_at.is_(None), GroupChat.owner_userid != "")
        .group_by(GroupChat.id, GroupChat.chat_id, GroupChat.name, GroupChat.owner_userid)
        .order_by(GroupChat.id)
    )
    if code is not None:
        query = query.where(_code_groups(code))
    if campaign.tiers:
        # integer arithmetic: `hits / members >= min_share %` without a float division
        query = query.having(and_(members > 0, hits * 100 >= members * campaign.min_share))
    return query


def select_groups(session: Session, campaign: CampaignSettings) -> list[ChatTarget]:
    """Return the live groups the campaign selects (a clear error for an unknown group code)."""
    code = get_group_code(session, campaign.group_code) if campaign.group_code else None
    return [
        ChatTarget(int(gid), str(chat), str(name), str(owner), int(n), int(hit))
        for gid, chat, name, owner, n, hit in session.execute(_selection(campaign, code))
    ]


def cooling_groups(
    session: Session, campaign: str, ids: Sequence[int], *, as_of: datetime, days: int
) -> set[int]:
    """Return the groups with a delivery of this campaign within `days` of as_of."""
    if days <= 0 or not ids:
        return set()
    return set(
        session.scalars(
            select(CampaignGroupDelivery.group_chat_id)
            .join(CampaignRun, CampaignRun.id == CampaignGroupDelivery.run_id)
            .join(Campaign, Campaign.id == CampaignGroupDelivery.campaign_id)
            .where(
                Campaign.name == campaign,
                CampaignRun.as_of > as_of - timedelta(days=days),
                CampaignGroupDelivery.group_chat_id.in_(list(ids)),
            )
            .distinct()
        )
    )


def record(session: Session, run: CampaignRun, plan: ChatPlan) -> None:
    """Insert the run's group deliveries: treatment `planned`, holdout `holdout`."""
    rows = [
        {
            "run_id": run.id,
            "campaign_id": run.campaign_id,
            "group_chat_id": t.group_chat_id,
            "arm": arm,
            "owner_userid": t.owner_userid,
            "status": DeliveryStatus.PLANNED if arm == "treatment" else DeliveryStatus.HOLDOUT,
        }
        for arm, targets in (("treatment", plan.treatment), ("holdout", plan.holdout))
        for t in targets
    ]
    if rows:
        session.execute(insert(CampaignGroupDelivery), rows)


def owners(session: Session, run_id: int) -> list[str]:
    """Return the senders of a run's treatment groups."""
    return list(
        session.scalars(
            select(CampaignGroupDelivery.owner_userid)
            .where(CampaignGroupDelivery.run_id == run_id, CampaignGroupDelivery.arm == "treatment")
            .group_by(CampaignGroupDelivery.owner_userid)
        )
    )


def create_tasks(session: Session, run: CampaignRun, *, text_for: TextFor, now: datetime) -> int:
    """Create one task per group owner (split past 2,000 groups); queue its groups."""
    rows = session.execute(
        select(CampaignGroupDelivery.owner_userid, CampaignGroupDelivery.id)
        .where(
            CampaignGroupDelivery.run_id == run.id,
            CampaignGroupDelivery.arm == "treatment",
            CampaignGroupDelivery.status == DeliveryStatus.PLANNED,
        )
        .order_by(CampaignGroupDelivery.owner_userid, CampaignGroupDelivery.id)
    )
    by_owner: dict[str, list[int]] = defaultdict(list)
    for owner, delivery_id in rows:
        by_owner[owner].append(delivery_id)
    made = 0
    for owner, ids in sorted(by_owner.items()):
        for batch, start in enumerate(range(0, len(ids), MSG_TEMPLATE_CHATS_MAX)):
            chunk = ids[start : start + MSG_TEMPLATE_CHATS_MAX]
            task = new_task(
                session,
                run,
                kind=GROUP_BROADCAST,
                sender=owner,
                batch=batch,
                text=text_for(owner),
                size=len(chunk),
                now=now,
            )
            session.execute(
                update(CampaignGroupDelivery)
                .where(CampaignGroupDelivery.id.in_(chunk))
                .values(status=DeliveryStatus.QUEUED, task_id=task.id)
                .execution_options(synchronize_session=False)
            )
            made += 1
    return made


def queued_chat_ids(session: Session, task_id: int) -> list[str]:
    """Return the chat ids of a task's queued groups."""
    return list(
        session.scalars(
            select(GroupChat.chat_id)
            .join(CampaignGroupDelivery, CampaignGroupDelivery.group_chat_id == GroupChat.id)
            .where(
                CampaignGroupDelivery.task_id == task_id,
                CampaignGroupDelivery.status == DeliveryStatus.QUEUED,
            )
            .order_by(GroupChat.id)
        )
    )


def mark_created(session: Session, task_id: int) -> int:
    """Mark a created task's queued groups `created`; return how many."""
    result = session.execute(
        update(CampaignGroupDelivery)
        .where(
            CampaignGroupDelivery.task_id == task_id,
            CampaignGroupDelivery.status == DeliveryStatus.QUEUED,
        )
        .values(status=DeliveryStatus.CREATED)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def waiting(session: Session, task_id: int) -> list[tuple[int, str]]:
    """Return (delivery id, chat_id) of a task's groups still waiting for a result."""
    return [
        (int(i), str(c))
        for i, c in session.execute(
            select(CampaignGroupDelivery.id, GroupChat.chat_id)
            .join(GroupChat, GroupChat.id == CampaignGroupDelivery.group_chat_id)
            .where(
                CampaignGroupDelivery.task_id == task_id,
                CampaignGroupDelivery.status == DeliveryStatus.CREATED,
            )
        )
    ]


def set_status(
    session: Session,
    ids: Sequence[int],
    status: str,
    send_status: int | None,
    sent_at: datetime | None,
) -> None:
    """Record one result on these group deliveries (only those still `created`)."""
    values: dict[str, object] = {"status": status, "send_status": send_status}
    if sent_at is not None:
        values["sent_at"] = sent_at
    session.execute(
        update(CampaignGroupDelivery)
        .where(
            CampaignGroupDelivery.id.in_(list(ids)),
            CampaignGroupDelivery.status == DeliveryStatus.CREATED,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def status_counts(session: Session, campaign_id: int) -> dict[str, int]:
    """Return the campaign's group deliveries by status, over all its runs."""
    return {
        str(status): int(n)
        for status, n in session.execute(
            select(CampaignGroupDelivery.status, func.count())
            .where(CampaignGroupDelivery.campaign_id == campaign_id)
            .group_by(CampaignGroupDelivery.status)
        )
    }

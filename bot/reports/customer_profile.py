"""A customer's page in the console: who, followed by whom, tags split, and the 轨迹.

Every query reads one customer's rows through an index on customer_id (relations,
orders, interactions, transitions, deliveries) or on the relation (tags, tag pushes);
each timeline source is capped before the merge, so a customer with years of events
costs the newest few.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.customers.card import OrderTotals, customer_card
from bot.customers.contacts import get_customer
from bot.customers.staff import shown_name
from bot.db.models import (
    Campaign,
    CampaignDelivery,
    Channel,
    Customer,
    FollowRelation,
    InteractionEvent,
    Order,
    OutboxOperation,
    OutboxTagChange,
    RelationTag,
    Staff,
    Tag,
    TagGroup,
    TierTransition,
)
from bot.reports.customer_groups import GroupStay, customer_groups
from bot.reports.customer_list import LOST_REASONS
from bot.rules import Dimension
from bot.rules.explain import explain_dimension
from bot.tiering.why import metric_line

TIMELINE_CAP = 100  # events on the page, newest first
PER_SOURCE = 50  # newest rows read from each source before the merge

ADD_WAYS = {
    0: "未知来源",
    1: "扫描二维码",
    2: "搜索手机号",
    3: "名片分享",
    4: "群聊",
    5: "手机通讯录",
    6: "微信联系人",
    8: "安装第三方应用时自动添加",
    9: "搜索邮箱",
    10: "视频号添加",
    11: "日程参与人",
    12: "会议参与人",
    13: "添加微信好友对应的企业微信",
    14: "智慧硬件专属客服添加",
    15: "上门服务客服添加",
    16: "获客链接",
    17: "定制开发",
    18: "需求回复",
    201: "内部成员共享",
    202: "管理员/负责人分配",
}
DELIVERY_STATES = {
    "planned": "已计划",
    "queued": "排队中",
    "created": "已创建群发，待员工发送",
    "sent": "已送达",
    "not_friend": "未送达：已不是好友",
    "over_quota": "未送达：客户接收已达上限",
    "unconfirmed": "员工未确认发送",
    "failed": "发送失败",
    "notified": "已提醒员工跟进",
    "delivered": "已推送",
    "holdout": "对照组（不发送）",
}
OUTBOX_STATES = {"pending": "待写入", "in_flight": "写入中", "done": "已写入", "dead": "写入失败"}


@dataclass(frozen=True)
class Follower:
    """A staff member who follows (or followed) the customer."""

    userid: str
    name: str
    channel: str
    add_way: str
    remark: str
    added_at: datetime | None
    status: str  # active | lost
    lost_at: datetime | None
    lost_reason: str  # Chinese, "" while active


@dataclass(frozen=True)
class TagItem:
    """A tag the customer has, and the staff whose relation carries it."""

    group: str
    name: str
    staff: tuple[str, ...]


@dataclass(frozen=True)
class TagSplit:
    """Tags as operators expect them: ours (本系统), the corp's other tags, personal ones."""

    system: tuple[TagItem, ...]
    corp: tuple[TagItem, ...]
    personal_stored: bool  # WeCom's personal tags are not synced: the page says so


@dataclass(frozen=True)
class Event:
    """One entry of the 轨迹."""

    at: datetime
    kind: str  # added | lost | tier | tag | order | interaction | delivery
    title: str
    detail: str = ""


@dataclass(frozen=True)
class CustomerProfile:
    """Everything the customer's page shows besides the tier explanation."""

    id: int
    external_userid: str
    name: str
    type: int
    corp_name: str
    gender: int
    unionid: str | None
    created_at: datetime
    followers: tuple[Follower, ...]
    tags: TagSplit
    orders: OrderTotals
    interactions: int
    attributes: dict[str, str]
    timeline: tuple[Event, ...]
    timeline_capped: bool
    groups: tuple[GroupStay, ...] = ()  # 客户群: the ones still in first

    @property
    def came_through(self) -> Follower | None:
        """The first relation: the channel and time the customer came through."""
        dated = [f for f in self.followers if f.added_at is not None]
        return min(dated, key=lambda f: f.added_at or self.created_at) if dated else None


def followers_of(
    customer: Customer, *, session: Session, display_names: Mapping[str, str]
) -> tuple[list[Follower], dict[int, str], list[str]]:
    """Return every relation as a follower, the shown name per relation id, the userids."""
    rows = session.execute(
        select(FollowRelation, Staff.userid, Staff.name, Channel.name)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .outerjoin(Channel, Channel.id == FollowRelation.channel_id)
        .where(FollowRelation.customer_id == customer.id)
        .order_by(FollowRelation.added_at, FollowRelation.id)
    ).all()
    out: list[Follower] = []
    names: dict[int, str] = {}
    userids: list[str] = []
    for rel, userid, staff_name, channel in rows:
        shown = shown_name(userid, staff_name, display_names)
        names[rel.id] = shown
        userids.append(userid)
        out.append(
            Follower(
                userid=userid,
                name=shown,
                channel=channel or "",
                add_way=ADD_WAYS.get(rel.add_way, f"其他（{rel.add_way}）"),
                remark=rel.remark,
                added_at=rel.added_at,
                status=rel.status,
                lost_at=rel.lost_at,
                lost_reason=""
                if rel.status == "active"
                else LOST_REASONS.get(rel.lost_reason or "", "其他原因"),
            )
        )
    return out, names, userids


def tag_split(customer_id: int, relation_staff: Mapping[int, str], *, session: Session) -> TagSplit:
    """Return the customer's tags split into ours and the corp's, with who carries each."""
    rows = session.execute(
        select(
            RelationTag.relation_id,
            TagGroup.name,
            Tag.name,
            Tag.managed,
            TagGroup.managed,
            TagGroup.tier_dimension,
        )
        .join(Tag, Tag.id == RelationTag.tag_id)
        .join(TagGroup, TagGroup.id == Tag.group_id)
        .join(FollowRelation, FollowRelation.id == RelationTag.relation_id)
        .where(FollowRelation.customer_id == customer_id, Tag.deleted.is_(False))
        .order_by(TagGroup.name, Tag.name)
    ).all()
    found: dict[tuple[str, str], tuple[bool, list[str]]] = {}
    for relation_id, group, name, tag_managed, group_managed, dimension in rows:
        ours = bool(tag_managed or group_managed or dimension)
        entry = found.setdefault((group, name), (ours, []))
        entry[1].append(relation_staff.get(relation_id, ""))
    items = [
        (ours, TagItem(group, name, tuple(dict.fromkeys(s for s in staff if s))))
        for (group, name), (ours, staff) in found.items()
    ]
    return TagSplit(
        system=tuple(t for ours, t in items if ours),
        corp=tuple(t for ours, t in items if not ours),
        personal_stored=False,
    )


def tier_events(
    customer_id: int,
    dims: Mapping[str, Dimension],
    *,
    session: Session,
    limit: int = PER_SOURCE,
) -> list[Event]:
    """Return the customer's newest tier changes, each with the rule that gave the new tier."""
    out: list[Event] = []
    for dim_name, before, after, at, metrics in session.execute(
        select(
            TierTransition.dimension,
            TierTransition.from_tier,
            TierTransition.to_tier,
            TierTransition.at,
            TierTransition.metrics,
        )
        .where(TierTransition.customer_id == customer_id)
        .order_by(TierTransition.at.desc(), TierTransition.id.desc())
        .limit(limit)
    ):
        dim = dims.get(dim_name)
        reason = ""
        values: dict[str, Any] = dict(metrics or {})
        if dim is not None and values:
            # The rule that gave the new tier, judged on the values the run recorded.
            reason = explain_dimension(dim, values, cur_tier=before, assigned=after).reason
        detail = "；".join(p for p in (reason, metric_line(values) if values else "") if p)
        out.append(Event(at, "tier", f"{dim_name}：{before or '无'} → {after or '无'}", detail))
    return out


def _tag_push_events(
    customer: Customer, userids: Sequence[str], *, session: Session
) -> list[Event]:
    if not userids:
        return []
    ops = session.execute(
        select(
            OutboxOperation.id,
            OutboxOperation.staff_userid,
            OutboxOperation.status,
            OutboxOperation.created_at,
            OutboxOperation.done_at,
        )
        .where(
            OutboxOperation.kind == "mark_tag",
            OutboxOperation.staff_userid.in_(list(userids)),
            OutboxOperation.external_userid == customer.external_userid,
        )
        .order_by(OutboxOperation.id.desc())
        .limit(PER_SOURCE)
    ).all()
    if not ops:
        return []
    changes: dict[int, list[str]] = {}
    for op_id, action, group, name in session.execute(
        select(OutboxTagChange.operation_id, OutboxTagChange.action, TagGroup.name, Tag.name)
        .join(Tag, Tag.id == OutboxTagChange.tag_id)
        .join(TagGroup, TagGroup.id == Tag.group_id)
        .where(OutboxTagChange.operation_id.in_([op[0] for op in ops]))
        .order_by(OutboxTagChange.action, TagGroup.name, Tag.name)
    ):
        changes.setdefault(op_id, []).append(
            f"{'打上' if action == 'add' else '移除'} {group}/{name}"
        )
    return [
        Event(
            done_at or created_at,
            "tag",
            "系统更新标签（" + OUTBOX_STATES.get(status, status) + "）",
            "，".join(changes.get(op_id, [])) + f"（员工 {userid}）",
        )
        for op_id, userid, status, created_at, done_at in ops
    ]


def _timeline(
    customer: Customer,
    followers: Sequence[Follower],
    userids: Sequence[str],
    dims: Mapping[str, Dimension],
    *,
    session: Session,
) -> tuple[tuple[Event, ...], bool]:
    events: list[Event] = []
    for f in followers:
        if f.added_at is not None:
            via = f"通过渠道“{f.channel}”" if f.channel else f"通过{f.add_way}"
            events.append(Event(f.added_at, "added", f"{via}添加了员工 {f.name}", f.remark))
        if f.status != "active" and f.lost_at is not None:
            events.append(Event(f.lost_at, "lost", f"流失：{f.lost_reason}", f"员工 {f.name}"))
    events += tier_events(customer.id, dims, session=session)
    events += _tag_push_events(customer, userids, session=session)
    for order_id, amount, paid_at, status, category in session.execute(
        select(Order.order_id, Order.amount, Order.paid_at, Order.status, Order.category)
        .where(Order.customer_id == customer.id)
        .order_by(Order.paid_at.desc(), Order.id.desc())
        .limit(PER_SOURCE)
    ):
        state = "已支付" if status == "paid" else "已退款"
        yuan = Decimal(amount).quantize(Decimal("0.01"))
        events.append(
            Event(paid_at, "order", f"订单 {yuan} 元（{state}）", f"{order_id} {category}".strip())
        )
    for kind, occurred_at in session.execute(
        select(InteractionEvent.kind, InteractionEvent.occurred_at)
        .where(InteractionEvent.customer_id == customer.id)
        .order_by(InteractionEvent.occurred_at.desc(), InteractionEvent.id.desc())
        .limit(PER_SOURCE)
    ):
        events.append(Event(occurred_at, "interaction", f"互动：{kind}"))
    for name, arm, status, created_at, sent_at in session.execute(
        select(
            Campaign.name,
            CampaignDelivery.arm,
            CampaignDelivery.status,
            CampaignDelivery.created_at,
            CampaignDelivery.sent_at,
        )
        .join(Campaign, Campaign.id == CampaignDelivery.campaign_id)
        .where(CampaignDelivery.customer_id == customer.id)
        .order_by(CampaignDelivery.created_at.desc(), CampaignDelivery.id.desc())
        .limit(PER_SOURCE)
    ):
        group = "对照组" if arm == "holdout" else "实验组"
        events.append(
            Event(
                sent_at or created_at,
                "delivery",
                f"触达活动“{name}”（{group}）",
                DELIVERY_STATES.get(status, status),
            )
        )
    events.sort(key=lambda e: e.at, reverse=True)
    return tuple(events[:TIMELINE_CAP]), len(events) > TIMELINE_CAP


def customer_profile(
    external_userid: str,
    *,
    session: Session,
    display_names: Mapping[str, str],
    dims: Sequence[Dimension] = (),
) -> CustomerProfile | None:
    """Return the customer's page data (None: no such customer)."""
    customer = get_customer(external_userid, session=session)
    if customer is None:
        return None
    card = customer_card(external_userid, session=session, display_names=display_names)
    followers, relation_staff, userids = followers_of(
        customer, session=session, display_names=display_names
    )
    timeline, capped = _timeline(
        customer, followers, userids, {d.name: d for d in dims}, session=session
    )
    return CustomerProfile(
        id=customer.id,
        external_userid=customer.external_userid,
        name=customer.name,
        type=customer.type,
        corp_name=customer.corp_name,
        gender=customer.gender,
        unionid=customer.unionid,
        created_at=customer.created_at,
        followers=tuple(followers),
        tags=tag_split(customer.id, relation_staff, session=session),
        orders=card.orders,
        interactions=card.interactions,
        attributes=card.attributes,
        timeline=timeline,
        timeline_capped=capped,
        groups=customer_groups(customer.external_userid, session=session),
    )

"""What the console's 渠道活码 pages read: the list with 渠道质量, one channel's report.

Counts come from the channel-stats rollup (channel_days, channel_totals). 渠道质量 — the
tiers of the customers each channel brought — from `channel_tier_mix`, which the rollup
and every re-tier keep (bot/tiering/channel_mix.py): a few rows per channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.channels.lookup import BACKUP, PRIMARY
from bot.db.models import (
    Channel,
    ChannelStaff,
    ChannelTag,
    ChannelTotal,
    GroupChat,
    Staff,
    Tag,
    TagGroup,
)
from bot.errors import NotFoundError
from bot.reports import channel_stats
from bot.reports.definitions import DEFINITIONS, Definition
from bot.tags import catalogue
from bot.tags.catalogue import TagPath
from bot.tiering import channel_mix

NO_TIER = "无层级"
TREND_DAYS = 30

# The 渠道活码 pages' own numbers, kept with the others in DEFINITIONS.
_DEFINITIONS = (
    Definition(
        "channel_quality",
        "渠道质量",
        "通过该渠道添加过员工的客户（去重，含已流失）目前在所选分层维度中的层级分布；"
        "“无层级”是没有该维度层级的客户。随渠道统计汇总和分层运行更新。",
    ),
    Definition(
        "channel_lost_by_customer",
        "流失·客户删员工",
        "今天删除或拉黑了员工的、通过该渠道添加的客户数（去重）。",
    ),
    Definition(
        "channel_lost_by_staff",
        "流失·员工删客户",
        "今天被员工删除的、通过该渠道添加的客户数（去重）。",
    ),
    Definition(
        "channel_report",
        "数据报表",
        "按天（配置时区）统计该渠道的新增、流失（客户删员工、员工删客户、其他）和净增客户数，"
        "均为去重人数；由渠道统计每 10 分钟汇总一次。",
    ),
    Definition(
        "channel_trend",
        "渠道趋势",
        "该渠道每天的新增、流失和净增客户数（去重），由渠道统计每 10 分钟汇总一次。",
    ),
)
# A group live code's (群活码) numbers: its joins and leaves, not adds.
_GROUP_DEFINITIONS = (
    Definition(
        "group_joined_total",
        "累计入群（去重）",
        "扫该群活码加入其客户群的人数（去重，含已退群的）。",
    ),
    Definition(
        "group_members_now",
        "当前在群",
        "经该群活码入群、目前仍在群中的人数（去重）。",
    ),
    Definition(
        "group_joined_today",
        "今日入群",
        "今天经该群活码入群的人数（去重）。",
    ),
    Definition(
        "group_left_today",
        "今日退群",
        "经该群活码入群的成员中今天离开的人数（去重），分“主动退群”和“被移出”；"
        "群解散或只由同步发现的退群另计。",
    ),
    Definition(
        "group_windows",
        "近7天 / 近30天",
        "经该群活码入群、退群的人数：每天按人去重后相加；由渠道统计每 10 分钟汇总一次。",
    ),
    Definition(
        "group_conversion",
        "入群后转化率",
        "累计入群的客户中，在第一次经该群活码入群之后有过支付订单的比例；每小时更新。",
    ),
    Definition(
        "group_quality",
        "群成员层级",
        "经该群活码入群过的人（去重，含已退群）目前在所选分层维度中的层级分布；"
        "还不是任何员工客户的群成员计入“无层级”。随渠道统计汇总和分层运行更新。",
    ),
)
DEFINITIONS.update({d.key: d for d in (*_DEFINITIONS, *_GROUP_DEFINITIONS)})


# --- a channel's settings -----------------------------------------------------------


@dataclass(frozen=True)
class ChannelConfig:
    """A channel as configured: what the edit form shows and the audit log records."""

    id: int
    name: str
    state: str
    config_id: str | None
    qr_code: str
    staff: tuple[str, ...]
    backup: tuple[str, ...]
    staff_names: dict[str, str]
    tags: tuple[str, ...]
    welcome: str
    daily_cap: int | None
    skip_verify: bool
    source: str
    created_at: datetime | None
    kind: str = "staff"  # staff: 员工活码; group: 群活码 (加入群聊)
    groups: tuple[str, ...] = ()  # a group code's chat ids
    group_names: dict[str, str] = field(default_factory=dict)  # chat id → name, when synced

    @property
    def is_group(self) -> bool:
        """Whether this is a group live code (群活码)."""
        return self.kind == "group"

    def audit(self) -> dict[str, Any]:
        """Return the fields an operator changes, for the audit log's before/after."""
        return {
            "name": self.name,
            "state": self.state,
            "staff": list(self.staff),
            "backup": list(self.backup),
            "tags": list(self.tags),
            "welcome": self.welcome,
            "daily_cap": self.daily_cap,
            "skip_verify": self.skip_verify,
            "kind": self.kind,
            "groups": list(self.groups),
        }


def _configs(session: Session, ids: Sequence[int] | None = None) -> list[ChannelConfig]:
    query = select(Channel).order_by(Channel.name)
    if ids is not None:
        query = query.where(Channel.id.in_(ids))
    channels = list(session.scalars(query))
    if not channels:
        return []
    chosen = [c.id for c in channels]
    members: dict[int, list[tuple[str, str, str]]] = {}
    for channel_id, role, userid, name in session.execute(
        select(ChannelStaff.channel_id, ChannelStaff.role, Staff.userid, Staff.name)
        .join(Staff, Staff.id == ChannelStaff.staff_id)
        .where(ChannelStaff.channel_id.in_(chosen))
        .order_by(ChannelStaff.channel_id, ChannelStaff.position)
    ):
        members.setdefault(int(channel_id), []).append((role, userid, name or ""))
    tags: dict[int, list[str]] = {}
    for channel_id, group, tag in session.execute(
        select(ChannelTag.channel_id, ChannelTag.group_name, ChannelTag.tag_name)
        .where(ChannelTag.channel_id.in_(chosen))
        .order_by(ChannelTag.group_name, ChannelTag.tag_name)
    ):
        tags.setdefault(int(channel_id), []).append(str(TagPath(group, tag)))
    chat_ids = {chat for c in channels for chat in c.chat_ids or ()}
    group_names = (
        {
            chat: name
            for chat, name in session.execute(
                select(GroupChat.chat_id, GroupChat.name).where(GroupChat.chat_id.in_(chat_ids))
            )
            if name
        }
        if chat_ids
        else {}
    )
    out = []
    for c in channels:
        people = members.get(c.id, [])
        out.append(
            ChannelConfig(
                id=c.id,
                name=c.name,
                state=c.state,
                config_id=c.config_id,
                qr_code=c.qr_code,
                staff=tuple(u for role, u, _ in people if role == PRIMARY),
                backup=tuple(u for role, u, _ in people if role == BACKUP),
                staff_names={u: n for _, u, n in people if n},
                tags=tuple(tags.get(c.id, ())),
                welcome=c.welcome_text,
                daily_cap=c.daily_cap,
                skip_verify=c.skip_verify,
                source=c.source,
                created_at=c.created_at,
                kind=c.kind,
                groups=tuple(c.chat_ids or ()),
                group_names={g: group_names[g] for g in c.chat_ids or () if g in group_names},
            )
        )
    return out


def channel_config(channel_id: int, *, session: Session) -> ChannelConfig:
    """Return one channel's settings; NotFoundError when there is none with this id."""
    found = _configs(session, [channel_id])
    if not found:
        raise NotFoundError(f"渠道不存在 / no channel with id {channel_id}")
    return found[0]


def config_named(name: str, *, session: Session) -> ChannelConfig:
    """Return the settings of the channel with this name; NotFoundError when none."""
    channel_id = session.scalar(select(Channel.id).where(Channel.name == name))
    if channel_id is None:
        raise NotFoundError(f"渠道不存在 / no channel named {name!r}")
    return channel_config(channel_id, session=session)


def all_configs(*, session: Session) -> list[ChannelConfig]:
    """Return every channel's settings, by name."""
    return _configs(session)


# --- the list with 渠道质量 ---------------------------------------------------------


@dataclass(frozen=True)
class TierShare:
    """One segment of a channel's 渠道质量 bar."""

    tier: str
    customers: int
    share: float  # of the channel's customers, 0..1


@dataclass(frozen=True)
class ChannelRow:
    """One row of the 渠道活码 list."""

    config: ChannelConfig
    summary: channel_stats.ChannelSummary
    quality: tuple[TierShare, ...]

    @property
    def quality_total(self) -> int:
        return sum(t.customers for t in self.quality)


@dataclass(frozen=True)
class ChannelListPage:
    """The 渠道活码 list: its rows, the dimension the quality bars show, 数据截至."""

    rows: tuple[ChannelRow, ...]
    dimension: str | None
    tiers: tuple[str, ...]  # the bars' segment order (NO_TIER last)
    computed_at: datetime | None


def channel_quality(*, session: Session, dimension: str) -> channel_mix.Mix:
    """Return the tier mix per channel as the last rollup or re-tier wrote it."""
    return channel_mix.mix(dimension, session=session)


def _shares(counts: dict[str | None, int], order: Sequence[str]) -> tuple[TierShare, ...]:
    total = sum(counts.values())
    if not total:
        return ()
    named = [t for t in order if counts.get(t)]
    named += sorted(t for t in counts if t is not None and t not in order and counts[t])
    out = [TierShare(t, counts[t], counts[t] / total) for t in named]
    if counts.get(None):
        out.append(TierShare(NO_TIER, counts[None], counts[None] / total))
    return tuple(out)


def channel_list(
    *,
    session: Session,
    today: date,
    dimension: str | None,
    tier_order: Sequence[str] = (),
) -> ChannelListPage:
    """Return every channel's row: settings, the rollup's counts, the chosen dimension's mix."""
    configs = {c.id: c for c in _configs(session)}
    summaries = channel_stats.channel_summary(session=session, today=today)
    mix = channel_quality(session=session, dimension=dimension) if dimension else {}
    rows = tuple(
        ChannelRow(configs[s.channel_id], s, _shares(mix.get(s.channel_id, {}), tier_order))
        for s in summaries.channels
        if s.channel_id in configs
    )
    seen = {t.tier for r in rows for t in r.quality}
    tiers = [t for t in tier_order if t in seen]
    tiers += sorted(t for t in seen if t not in tiers and t != NO_TIER)
    if NO_TIER in seen:
        tiers.append(NO_TIER)
    return ChannelListPage(rows, dimension, tuple(tiers), summaries.computed_at)


# --- one channel's page -------------------------------------------------------------


@dataclass(frozen=True)
class ChannelReport:
    """One channel's page: settings, totals, today, and its days (oldest first)."""

    config: ChannelConfig
    customers: int
    converted: int
    revenue: Decimal
    orders_at: datetime | None
    days: tuple[channel_stats.DayCounts, ...]
    computed_at: datetime | None

    @property
    def today(self) -> channel_stats.DayCounts:
        return self.days[-1]

    @property
    def windows(self) -> tuple[channel_stats.Window, ...]:
        """A group code's joins and leaves in 近7天 and 近30天."""
        return channel_stats.windows(self.days)

    @property
    def conversion_rate(self) -> float | None:
        return self.converted / self.customers if self.customers else None


def channel_report(
    channel_id: int, *, session: Session, today: date, days: int = TREND_DAYS
) -> ChannelReport:
    """Return a channel's settings, totals and its last `days` days from the rollup."""
    config = channel_config(channel_id, session=session)
    total = session.get(ChannelTotal, channel_id)
    trend = channel_stats.channel_trend(channel_id, session=session, today=today, days=days)
    return ChannelReport(
        config=config,
        customers=total.customers if total else 0,
        converted=total.converted if total else 0,
        revenue=total.revenue if total else Decimal(0),
        orders_at=total.orders_at if total else None,
        days=trend.days,
        computed_at=channel_stats.computed_at(session=session),
    )


# --- what the form checks -----------------------------------------------------------


def known_tags(*, session: Session) -> list[str]:
    """Return every live corp tag as 组名/标签名, for the form's suggestions."""
    rows = session.execute(
        select(TagGroup.name, Tag.name)
        .join(Tag, Tag.group_id == TagGroup.id)
        .where(TagGroup.deleted.is_(False), Tag.deleted.is_(False))
        .order_by(TagGroup.name, Tag.name)
    ).all()
    return [str(TagPath(g, t)) for g, t in rows]


def unknown_tags(paths: Sequence[TagPath], *, session: Session) -> list[TagPath]:
    """Return the tags the catalogue does not have (WeCom would get them created)."""
    return [p for p in paths if catalogue.find(session, p) is None]


def known_staff(*, session: Session) -> list[tuple[str, str]]:
    """Return the active members of the last sync as (userid, name), for the form."""
    rows = session.execute(
        select(Staff.userid, Staff.name).where(Staff.active.is_(True)).order_by(Staff.userid)
    ).all()
    return [(u, n or "") for u, n in rows]

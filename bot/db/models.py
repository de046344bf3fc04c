"""The schema: typed SQLAlchemy 2 models for every table the bot keeps.

Changing a model means a new Alembic revision (`make migration MSG=...`); a test fails
when the models and the migrations disagree.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from bot.db.types import BigIntPK, Money, UTCDateTime, utcnow
from bot.states import (
    AlertStatus,
    DeliveryStatus,
    InboxStatus,
    OutboxStatus,
    RunStatus,
    TaskStatus,
)

# Deterministic constraint names so migrations are portable between SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


# --- people -------------------------------------------------------------------------


class Staff(TimestampMixin, Base):
    """A WeCom member (成员) who has 客户联系 and can own customer relations."""

    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    userid: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Customer(TimestampMixin, Base):
    """An external contact (客户), known by external_userid and, when WeCom gives it, unionid."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    external_userid: Mapped[str] = mapped_column(String(64), unique=True)
    unionid: Mapped[str | None] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    type: Mapped[int] = mapped_column(Integer, default=1)  # 1 WeChat user, 2 WeCom user
    gender: Mapped[int] = mapped_column(Integer, default=0)
    avatar: Mapped[str] = mapped_column(String(512), default="")
    corp_name: Mapped[str] = mapped_column(String(128), default="")

    relations: Mapped[list[FollowRelation]] = relationship(back_populates="customer")


class FollowRelation(TimestampMixin, Base):
    """One staff member × one customer (跟进关系): how it began, whether it still holds."""

    __tablename__ = "follow_relations"
    __table_args__ = (
        UniqueConstraint("staff_id", "customer_id"),
        # The 流失 page's lists per reason, newest first, and their counts.
        Index("ix_follow_relations_lost", "status", "lost_reason", "lost_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    channel_id: Mapped[int | None] = mapped_column(
        ForeignKey("channels.id", ondelete="SET NULL"), index=True
    )
    state: Mapped[str] = mapped_column(String(64), default="")
    remark: Mapped[str] = mapped_column(String(128), default="")
    add_way: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | lost
    # Indexed for the console's 最新添加 (the latest adds, newest first).
    added_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    lost_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # del_follow_user: the customer deleted the staff member; del_external_contact: the reverse
    lost_reason: Mapped[str | None] = mapped_column(String(32))
    transfer_fail_reason: Mapped[str | None] = mapped_column(String(32))
    # When the channel of this add (its tags, the scan count) was applied: by the add
    # callback, or by a sync that found the relation when the callback never arrived.
    # NULL: not yet (a sync applies the channel its `state` names).
    channel_applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    staff: Mapped[Staff] = relationship()
    customer: Mapped[Customer] = relationship(back_populates="relations")
    channel: Mapped[Channel | None] = relationship()


# --- channels (渠道活码) --------------------------------------------------------------


class Channel(TimestampMixin, Base):
    """A live code: a WeCom contact way whose `state` identifies the source of a scan."""

    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(30), unique=True)
    config_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    qr_code: Mapped[str] = mapped_column(String(512), default="")
    welcome_text: Mapped[str] = mapped_column(Text, default="")
    welcome_attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    daily_cap: Mapped[int | None] = mapped_column(Integer)
    skip_verify: Mapped[bool] = mapped_column(Boolean, default=True)
    source: Mapped[str] = mapped_column(String(16), default="cli")  # cli | api | config
    # Add events (scans that became or renewed a relation) processed for this channel.
    scans: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # "staff": a 联系我 contact way (customers add staff); "group": a 加入群聊 join way
    # (customers join up to 5 customer groups; docs/wecom-groups.md). A group code has no
    # staff, welcome or cap; its config_id is the join way's.
    kind: Mapped[str] = mapped_column(String(8), default="staff", server_default="staff")
    chat_ids: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    auto_create_room: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    room_base_name: Mapped[str] = mapped_column(String(40), default="", server_default="")
    room_base_id: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    staff: Mapped[list[ChannelStaff]] = relationship(
        cascade="all, delete-orphan", order_by="ChannelStaff.position"
    )
    tags: Mapped[list[ChannelTag]] = relationship(cascade="all, delete-orphan")


class ChannelStaff(Base):
    """Who answers a channel: primary staff in rotation, backups when all are capped."""

    __tablename__ = "channel_staff"

    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), default="primary")  # primary | backup
    position: Mapped[int] = mapped_column(Integer, default=0)
    # Set while the member is taken off the contact way for reaching the daily cap.
    paused_on: Mapped[date | None] = mapped_column(Date)

    staff: Mapped[Staff] = relationship()


class ChannelTag(Base):
    """A tag a scan of the channel gets, named by (group, tag) so console re-creation is safe."""

    __tablename__ = "channel_tags"

    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    group_name: Mapped[str] = mapped_column(String(30), primary_key=True)
    tag_name: Mapped[str] = mapped_column(String(30), primary_key=True)


# --- customer groups (客户群; docs/wecom-groups.md) ---------------------------------------


class GroupChat(TimestampMixin, Base):
    """A customer group (客户群) in WeCom, owned by a staff member; kept after dismissal."""

    __tablename__ = "group_chats"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    # a userid, not a staff row: the group may be read before its owner is synced
    owner_userid: Mapped[str] = mapped_column(String(64), default="", index=True)
    notice: Mapped[str] = mapped_column(Text, default="")
    # groupchat/get's member_version as last applied: equal to a callback's CurMemVer means
    # the membership is already known
    member_version: Mapped[str] = mapped_column(String(64), default="")
    group_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # WeCom's create_time
    dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # last groupchat/get applied

    members: Mapped[list[GroupMember]] = relationship(
        back_populates="group_chat", cascade="all, delete-orphan"
    )


class GroupMember(Base):
    """One stay of someone in a customer group: when and how they joined, when they left.

    A member who leaves and comes back has a second row; `left_at` NULL is a current member.
    """

    __tablename__ = "group_members"
    __table_args__ = (
        # a re-delivered join or a sync finding the same stay lands on the same row
        UniqueConstraint("group_chat_id", "member_userid", "joined_at"),
        # the current members of a group
        Index("ix_group_members_current", "group_chat_id", "left_at"),
        # someone's stays across groups: an add event looks for its customer's joins
        Index("ix_group_members_member", "member_userid"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    group_chat_id: Mapped[int] = mapped_column(ForeignKey("group_chats.id", ondelete="CASCADE"))
    member_userid: Mapped[str] = mapped_column(String(64))  # userid or external_userid
    member_type: Mapped[int] = mapped_column(Integer)  # 1 staff member, 2 external contact
    # the customer, when an external member is one the bot knows (a relation may come later)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # groupchat/get's join_scene: 1 invited, 2 invited by link, 3 scanned a group QR
    join_scene: Mapped[int] = mapped_column(Integer, default=0)
    invitor_userid: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(30), default="")  # the join way's state, if any
    channel_id: Mapped[int | None] = mapped_column(
        ForeignKey("channels.id", ondelete="SET NULL"), index=True
    )
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    quit_scene: Mapped[int | None] = mapped_column(Integer)  # 0 left, 1 removed
    dismissed: Mapped[bool] = mapped_column(Boolean, default=False)  # ended by a dismissal
    # the channel's tags were queued for the member's relations (NULL: due once they are
    # somebody's customer; never set for a stay without a channel)
    channel_applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    group_chat: Mapped[GroupChat] = relationship(back_populates="members")


# --- the tag catalogue and the tags WeCom has ---------------------------------------


class TagGroup(TimestampMixin, Base):
    """A corp tag group (标签组) as WeCom has it; `managed` when our app created it.

    `tier_dimension` names the tier dimension whose tags the bot keeps in this group (set
    when the bot creates or adopts it for that dimension): what a dimension removed from
    config is cleaned up by.
    """

    __tablename__ = "tag_groups"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    wecom_group_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(30), unique=True)
    order: Mapped[int] = mapped_column(BigInteger, default=0)
    managed: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    tier_dimension: Mapped[str | None] = mapped_column(String(64))

    tags: Mapped[list[Tag]] = relationship(back_populates="group")


class Tag(TimestampMixin, Base):
    """A corp tag. Keyed by (group, name); the WeCom id is resolved from the catalogue."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("group_id", "name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("tag_groups.id", ondelete="CASCADE"))
    wecom_tag_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(30))
    order: Mapped[int] = mapped_column(BigInteger, default=0)
    managed: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)

    group: Mapped[TagGroup] = relationship(back_populates="tags")


class RelationTag(Base):
    """A tag WeCom currently has on a relation (as last read or written by us)."""

    __tablename__ = "relation_tags"

    relation_id: Mapped[int] = mapped_column(
        ForeignKey("follow_relations.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- data in --------------------------------------------------------------------------


class Order(TimestampMixin, Base):
    """An order from the business system; idempotent by order_id."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    order_id: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    external_userid: Mapped[str | None] = mapped_column(String(64), index=True)
    unionid: Mapped[str | None] = mapped_column(String(64), index=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # paid | refunded
    category: Mapped[str] = mapped_column(String(64), default="")
    is_new_product: Mapped[bool] = mapped_column(Boolean, default=False)


class InteractionEvent(TimestampMixin, Base):
    """An interaction (visit, click, reply, coupon use...) idempotent by event_id."""

    __tablename__ = "interaction_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    external_userid: Mapped[str | None] = mapped_column(String(64), index=True)
    unionid: Mapped[str | None] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProfileAttribute(Base):
    """One named attribute (region, age, member level...) of one customer.

    `subject` is `external_userid` when known, else `unionid:<unionid>`, so rows for
    customers not yet seen are kept and linked once the customer appears.
    """

    __tablename__ = "profile_attributes"
    __table_args__ = (UniqueConstraint("subject", "name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    subject: Mapped[str] = mapped_column(String(80))
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    external_userid: Mapped[str | None] = mapped_column(String(64), index=True)
    unionid: Mapped[str | None] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


# --- tiers ----------------------------------------------------------------------------


class TierAssignment(Base):
    """The tier a customer holds now in one dimension (one tag of that dimension's group)."""

    __tablename__ = "tier_assignments"
    __table_args__ = (
        # The console's customer list filtered to a tier: a page walks it newest first.
        Index("ix_tier_assignments_dimension_tier", "dimension", "tier", "customer_id"),
        # 流失预警 (and any tier's members by entry): a tier's newest entrants first, the
        # page's rows read from the index's end, never a sort of every member.
        Index("ix_tier_assignments_tier_since", "dimension", "tier", "since", "customer_id"),
    )

    # Keyed by customer first (no surrogate id): ready to be distributed by customer id
    # (docs/citus.md).
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    dimension: Mapped[str] = mapped_column(String(64), primary_key=True)
    tier: Mapped[str] = mapped_column(String(30))
    since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TierTransition(Base):
    """History: a customer moved from one tier to another (None = no tier) in a run."""

    __tablename__ = "tier_transitions"
    __table_args__ = (
        Index("ix_tier_transitions_customer_dimension", "customer_id", "dimension"),
        # The console's customer list filtered to one run's moves (the heatmap's links).
        Index("ix_tier_transitions_run_dimension", "run_id", "dimension", "customer_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    dimension: Mapped[str] = mapped_column(String(64))
    from_tier: Mapped[str | None] = mapped_column(String(30))
    to_tier: Mapped[str | None] = mapped_column(String(30))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("retier_runs.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # The run's as_of, and the values of the metrics the dimension's rules read then.
    as_of: Mapped[datetime | None] = mapped_column(UTCDateTime)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class RetierRun(Base):
    """One evaluation of the tier rules over all customers."""

    __tablename__ = "retier_runs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    customers: Mapped[int] = mapped_column(Integer, default=0)
    transitions: Mapped[int] = mapped_column(Integer, default=0)
    operations: Mapped[int] = mapped_column(Integer, default=0)
    as_of: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # "full" (every customer) or "touched" (customers whose data just changed)
    scope: Mapped[str] = mapped_column(String(16), default="full", server_default="full")
    changed_customers: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The last outbox operation before the run finished: its push's operations come after.
    outbox_from: Mapped[int | None] = mapped_column(BigInteger)
    # A full run's BG/NBD and Gamma-Gamma fit as JSON (bot.tiering.metrics_predictive):
    # parameters, log-likelihoods, fit time, or why not; touched runs reuse the latest.
    predictive: Mapped[str | None] = mapped_column(Text)


class TierPopulation(Base):
    """One buyer of the last full run's 365-day window: what R/M scores rank against.

    Written whole by each full (not dry) run, its customers' rows by each touched run of
    the same as_of local day and zone; `TierPopulationState` says which (bot.tiering.population).
    """

    __tablename__ = "tier_population"

    # No foreign key: its per-row check doubled the nightly COPY; a deleted customer's row
    # stays until the next full run, as in an engine's kept population.
    customer_id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=False)
    spend_365d: Mapped[int] = mapped_column(BigInteger)  # fen, the window's paid orders
    days_since_last_order: Mapped[int] = mapped_column(Integer)  # from the as_of local day
    # The run's clv_365d (bot.tiering.metrics_predictive); None when its model has none.
    clv_365d: Mapped[float | None] = mapped_column(Float)


class TierPopulationState(Base):
    """The one row saying which full run `tier_population` holds, and for which day.

    Or, with no run (`run_id` None), that the day-population job built it: then
    `predictive` holds the model it fitted (a run's is in `retier_runs.predictive`).
    """

    __tablename__ = "tier_population_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # always 1
    run_id: Mapped[int | None] = mapped_column(BigInteger)
    as_of_day: Mapped[date] = mapped_column(Date)  # the run's as_of, local day in `tz`
    tz: Mapped[str] = mapped_column(String(64))
    profile_names: Mapped[str] = mapped_column(Text)  # JSON list: the profile.* columns
    predictive: Mapped[str | None] = mapped_column(Text)  # the job's model (Model.to_json)


class TouchedCustomer(Base):
    """A customer whose orders, events or profile changed since their last re-tier.

    Written in the ingest's own transaction, so a crash never loses one; the touched
    re-tier takes them in batches and deletes the ones it re-tiered.
    """

    __tablename__ = "tier_touched"

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    touched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


# --- console aggregates (bot/reports) ------------------------------------------------


class TierRunMove(Base):
    """How many customers one run moved between two tiers of a dimension (None = 无)."""

    __tablename__ = "tier_run_moves"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("retier_runs.id", ondelete="CASCADE"), index=True
    )
    dimension: Mapped[str] = mapped_column(String(64))
    from_tier: Mapped[str | None] = mapped_column(String(30))
    to_tier: Mapped[str | None] = mapped_column(String(30))
    customers: Mapped[int] = mapped_column(Integer)


class TierSizeDay(Base):
    """A tier's size after the last run of a local day; the latest run's rows are "now".

    Every run rewrites its as_of day's rows (a full run from its own count, a touched run
    from the previous rows and its moves); tier "" marks a dimension the run measured.
    """

    __tablename__ = "tier_size_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    dimension: Mapped[str] = mapped_column(String(64), primary_key=True)
    tier: Mapped[str] = mapped_column(String(30), primary_key=True)
    customers: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[int] = mapped_column(BigInteger, index=True)


class ChannelDay(Base):
    """One local day's adds and losses through one channel (channel_id 0: every relation).

    Written by the channel-stats rollup (bot/reports/channel_stats.py), never by a callback.
    """

    __tablename__ = "channel_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    channel_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    added: Mapped[int] = mapped_column(Integer, default=0)
    lost_by_customer: Mapped[int] = mapped_column(Integer, default=0)  # del_follow_user
    lost_by_staff: Mapped[int] = mapped_column(Integer, default=0)  # del_external_contact
    lost_other: Mapped[int] = mapped_column(Integer, default=0)  # handover, sync, 84061
    customers: Mapped[int] = mapped_column(Integer, default=0)  # with an active relation
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChannelTotal(Base):
    """A channel's totals since it began (channel_id 0: every relation), from the rollup."""

    __tablename__ = "channel_totals"

    channel_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    customers: Mapped[int] = mapped_column(Integer, default=0)  # ever added through it
    converted: Mapped[int] = mapped_column(Integer, default=0)  # of those, paid after the add
    revenue: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    orders_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # conversion's as-of


class ChannelTierMix(Base):
    """渠道质量: customers ever added through a channel by their tier now in one dimension.

    tier "" counts the channel's customers holding no tier of the dimension. Rewritten
    whole by the channel rollup and by a full re-tier; a touched re-tier applies its moves
    (bot/tiering/channel_mix.py), so the page reads a few rows per channel.
    """

    __tablename__ = "channel_tier_mix"

    channel_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    dimension: Mapped[str] = mapped_column(String(64), primary_key=True)
    tier: Mapped[str] = mapped_column(String(30), primary_key=True)
    customers: Mapped[int] = mapped_column(Integer, default=0)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- inbox and outbox -----------------------------------------------------------------


class InboxEvent(Base):
    """A verified, decrypted callback, stored before we acknowledge it.

    `dedup_key` makes WeCom's re-deliveries of the same event collapse into one row.
    """

    __tablename__ = "inbox_events"
    __table_args__ = (
        Index("ix_inbox_events_status_next", "status", "next_attempt_at"),
        Index("ix_inbox_events_relation", "relation_key", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(255), unique=True)
    event: Mapped[str] = mapped_column(String(64))
    change_type: Mapped[str] = mapped_column(String(64), default="")
    payload: Mapped[str] = mapped_column(Text)  # the decrypted XML, as received
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # pending | processing | done | ignored | dead
    status: Mapped[str] = mapped_column(String(16), default=InboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    # "userid|external_userid" for events about one relation: they take effect in order
    relation_key: Mapped[str | None] = mapped_column(String(255))
    # the heartbeat id of the process that acknowledged or claimed it (bot/heartbeat.py)
    owner: Mapped[str | None] = mapped_column(String(64))


class OutboxOperation(Base):
    """A pending WeCom write, durable until done or dead.

    mark_tag operations are coalesced per (staff, customer): their tag changes live in
    OutboxTagChange so a later change to the same relation merges into one call.
    """

    __tablename__ = "outbox_operations"
    __table_args__ = (
        Index("ix_outbox_operations_status_next", "status", "next_attempt_at"),
        Index("ix_outbox_operations_coalesce", "kind", "staff_userid", "external_userid", "status"),
        # Claims walk pending operations highest priority first, oldest first within one.
        Index("ix_outbox_operations_claim", "status", "kind", "priority", "id"),
        # The console's push rate: operations done within the last minutes.
        Index("ix_outbox_operations_status_done", "status", "done_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # mark_tag | send_welcome | message | ...
    staff_userid: Mapped[str] = mapped_column(String(64), default="")
    external_userid: Mapped[str] = mapped_column(String(64), default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Higher drains first: interactive changes above every bulk push, then by customer value.
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # pending | in_flight | done | dead
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_errcode: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # the heartbeat id of the process whose worker claimed it last (bot/heartbeat.py)
    owner: Mapped[str | None] = mapped_column(String(64))

    tag_changes: Mapped[list[OutboxTagChange]] = relationship(cascade="all, delete-orphan")


class OutboxTally(Base):
    """How many outbox operations are in each status, kept by triggers on outbox_operations.

    Written in the transaction of every statement that inserts, updates or deletes
    operations (bot/tags/tallies.py): `block` -1 counts every operation, `block` b those
    with ids in [b * BLOCK, (b + 1) * BLOCK), so a push's range is a sum over its blocks.
    Each PostgreSQL connection adds into its own `shard` row (its backend pid modulo
    SHARDS), so concurrent outbox workers never wait on one counter row.
    """

    __tablename__ = "outbox_tallies"

    block: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    operations: Mapped[int] = mapped_column(BigInteger)


class OutboxTagChange(Base):
    """One tag to add or remove within a coalesced mark_tag operation."""

    __tablename__ = "outbox_tag_changes"

    operation_id: Mapped[int] = mapped_column(
        ForeignKey("outbox_operations.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)
    action: Mapped[str] = mapped_column(String(8))  # add | remove


# --- outreach -------------------------------------------------------------------------


class Campaign(TimestampMixin, Base):
    """An outreach campaign, by its config name; its runs, tasks and deliveries hang off it."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # group_message | group_invite | follow_up | webhook (as last configured; each run keeps
    # its own)
    action: Mapped[str] = mapped_column(String(16), default="group_message")
    dimension: Mapped[str] = mapped_column(String(64), default="")
    # group_invite: the group live code (channel name) as last configured; the report
    # counts joins of its groups
    group_code: Mapped[str | None] = mapped_column(String(64))


class CampaignRun(Base):
    """One run of a campaign: its audience recorded as deliveries, then sent by its tasks.

    status: planned (deliveries recorded, nothing sent) | held (quiet hours: sent when they
    end) | sending | done | failed. `transitions_upto` is the highest tier_transitions.id an
    on_enter audience considered: the next run takes entries after it.
    """

    __tablename__ = "campaign_runs"
    __table_args__ = (Index("ix_campaign_runs_campaign_started", "campaign_id", "started_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16), default="manual")  # manual | schedule
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.PLANNED, index=True)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    transitions_upto: Mapped[int | None] = mapped_column(BigInteger)
    # Counts at planning: the audience before exclusions, then where each customer went.
    audience: Mapped[int] = mapped_column(Integer, default=0)
    treatment: Mapped[int] = mapped_column(Integer, default=0)
    holdout: Mapped[int] = mapped_column(Integer, default=0)
    capped: Mapped[int] = mapped_column(Integer, default=0)
    cooling: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class CampaignTask(Base):
    """One call unit of a run, recorded before the call so it is made at most once.

    group_message: one add_msg_template per sender (`batch` > 0 past 10,000 customers);
    follow_up: one app message per member; webhook: one POST per batch (sender "").
    status: pending | calling (request may have gone out) | created (WeCom has it: msgid)
    | sent (app message / webhook accepted) | failed (permanent, `last_error`).
    A task found `calling` after a crash is resolved, never blindly retried: a 群发 by
    listing the sender's tasks (get_groupmsg_list_v2) for one with its text after
    `attempted_at`.
    """

    __tablename__ = "campaign_tasks"
    __table_args__ = (
        UniqueConstraint("run_id", "sender", "batch"),
        Index("ix_campaign_tasks_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("campaign_runs.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # group_message | follow_up | webhook
    sender: Mapped[str] = mapped_column(String(64), default="")
    batch: Mapped[int] = mapped_column(Integer, default=0)
    text: Mapped[str] = mapped_column(Text, default="")
    customers: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.PENDING)
    msgid: Mapped[str | None] = mapped_column(String(128), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    attempted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Results polling (get_groupmsg_task / get_groupmsg_send_result) for group_message.
    polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    results_final: Mapped[bool] = mapped_column(Boolean, default=False)


class CampaignDelivery(Base):
    """A customer in a run's audience, in the treatment or the holdout arm.

    Recorded under (run, customer) before any call, so a rerun or retry cannot send twice.
    status: planned | queued (in a task not yet created) | created (in a 群发 WeCom has)
    | sent | not_friend | over_quota | unconfirmed | failed | notified (follow_up) |
    delivered (webhook) | holdout (never messaged).
    `send_status` is WeCom's (0 unsent, 1 sent, 2 not a friend, 3 over quota).
    """

    __tablename__ = "campaign_deliveries"
    __table_args__ = (
        UniqueConstraint("run_id", "customer_id"),
        Index("ix_campaign_deliveries_campaign_customer", "campaign_id", "customer_id"),
        Index("ix_campaign_deliveries_customer_created", "customer_id", "created_at"),
        Index("ix_campaign_deliveries_task", "task_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("campaign_runs.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    arm: Mapped[str] = mapped_column(String(16))  # treatment | holdout
    tier: Mapped[str | None] = mapped_column(String(30))  # the customer's tier at selection
    staff_userid: Mapped[str | None] = mapped_column(String(64))  # who reaches them
    task_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaign_tasks.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PLANNED)
    send_status: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CampaignGroupDelivery(Base):
    """A customer group in a group_broadcast run (群发 to groups), treatment or holdout.

    As campaign_deliveries for customers: recorded under (run, group) before any call, so a
    rerun or retry cannot post twice. status: planned | queued | created | sent |
    not_sent (WeCom: 2, e.g. the group was dismissed) | over_quota | unconfirmed | failed |
    holdout. `owner_userid` is the group's owner at selection: the 群发's sender.
    """

    __tablename__ = "campaign_group_deliveries"
    __table_args__ = (
        UniqueConstraint("run_id", "group_chat_id"),
        Index("ix_campaign_group_deliveries_campaign_group", "campaign_id", "group_chat_id"),
        Index("ix_campaign_group_deliveries_task", "task_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("campaign_runs.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    group_chat_id: Mapped[int] = mapped_column(ForeignKey("group_chats.id", ondelete="CASCADE"))
    arm: Mapped[str] = mapped_column(String(16))  # treatment | holdout
    owner_userid: Mapped[str] = mapped_column(String(64))
    task_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaign_tasks.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PLANNED)
    send_status: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --- shared process state -------------------------------------------------------------


class WeComToken(Base):
    """An access token shared by every process, keyed by corp and app secret hash."""

    __tablename__ = "wecom_tokens"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    access_token: Mapped[str] = mapped_column(String(1024), default="")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class JsapiTicketRow(Base):
    """A JS-SDK ticket shared by every process: the corp's (agent_id 0) or one app's.

    Keyed per corp and per corp + app, never per page URL: WeCom allows 400 fetches an
    hour per corp and 100 per app (wecom-api.md section 7.6).
    """

    __tablename__ = "wecom_jsapi_tickets"

    corp_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # corp | agent
    agent_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # 0 for the corp's
    ticket: Mapped[str] = mapped_column(String(1024), default="")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # After WeCom refused a fetch (45009: the hourly limit): no process asks again before.
    refused_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(String(255), default="")


class WeComBudget(Base):
    """One WeCom API's shared budget state for a corp: the row reservations lock first."""

    __tablename__ = "wecom_budgets"

    corp_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    api: Mapped[str] = mapped_column(String(128), primary_key=True)
    # Seconds since the epoch until which WeCom refuses the API (45009), for every process.
    paused_until: Mapped[float] = mapped_column(default=0.0, server_default="0")


class WeComBudgetSlot(Base):
    """Calls reserved in one time slot of one window scale (1 s of a minute, 1 min of an hour)."""

    __tablename__ = "wecom_budget_slots"

    corp_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    api: Mapped[str] = mapped_column(String(128), primary_key=True)
    scale: Mapped[str] = mapped_column(String(8), primary_key=True)  # minute | hour
    slot: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    interactive: Mapped[int] = mapped_column(Integer, default=0)
    bulk: Mapped[int] = mapped_column(Integer, default=0)


class Lease(Base):
    """A named lock held until `expires_at` (the one scheduler, the token refresher)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuthFailure(Base):
    """One failed authentication from a client address, kept for the throttle's window."""

    __tablename__ = "auth_failures"
    __table_args__ = (
        Index("ix_auth_failures_scope_address_at", "scope", "address", "at"),
        Index("ix_auth_failures_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))  # admin | callback
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[float]  # seconds since the epoch: every process's clock, unlike monotonic


class StaffAlert(Base):
    """An app message for one member, queued so a burst is merged under WeCom's send limit."""

    __tablename__ = "staff_alerts"
    __table_args__ = (
        Index("ix_staff_alerts_status_next", "status", "next_attempt_at"),
        Index("ix_staff_alerts_userid_sent", "userid", "sent_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    userid: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))  # customer_lost | tier_alert | outreach
    # Set when an alert must be queued once only (a tier entry's transition id, a run's
    # notice): a second queue attempt with the same key is a no-op.
    dedup_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    subject: Mapped[str] = mapped_column(String(255))  # whom it is about: a customer's name
    text: Mapped[str] = mapped_column(Text)  # the full alert when it goes out alone
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # pending | sending | sent | dead
    status: Mapped[str] = mapped_column(String(16), default=AlertStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --- scheduled jobs ---------------------------------------------------------------------


class JobRun(Base):
    """One finished run of a scheduled job or of a sync started by hand: when, outcome, counts.

    Written once, when the run ends (bot/job_runs.py); the 系统 page lists them.
    """

    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_job_id", "job", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    job: Mapped[str] = mapped_column(String(64))  # sync | retier | channel-stats | outreach:<name>
    trigger: Mapped[str] = mapped_column(String(16))  # schedule | manual
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(16))  # ok | error
    error: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the run's counts


# --- operator console (/admin/) -----------------------------------------------------


class ConsoleSession(Base):
    """A signed-in console user; the cookie carries the id, the table keeps only its hash."""

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the id
    actor: Mapped[str] = mapped_column(String(64))  # a WeCom userid, or "admin-token"
    role: Mapped[str] = mapped_column(String(16))  # admin | viewer
    method: Mapped[str] = mapped_column(String(16))  # token | wecom | sidebar
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class ConsoleAudit(Base):
    """One thing done from the console: who, in which role, what, when, before and after."""

    __tablename__ = "console_audit"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))  # admin | viewer | "" (refused sign-in)
    action: Mapped[str] = mapped_column(String(64))  # login | logout | login_refused | ...
    target: Mapped[str] = mapped_column(String(255), default="")
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    address: Mapped[str] = mapped_column(String(64), default="")

"""客户 list for the console: search, filters, keyset pages, and rows for the export.

Pages walk customer ids newest first and stop after one page plus one row, so a page
costs the rows it shows (and the ones the filters skip), never a count of a million.
A tier filter walks `ix_tier_assignments_dimension_tier` and a run's moves
`ix_tier_transitions_run_dimension` (a rare tier costs its own rows, not a pass over
every customer); the other filters are EXISTS probes on indexed keys of the customer.
A search for an exact external_userid is one index lookup. A search by name or remark
matches substrings: it runs as two queries, names and remarks, each newest first and
limited to the page, and keeps the page's newest of both. On PostgreSQL with pg_trgm each
is served by a trigram GIN index where the planner finds it selective (migration
603a8c5bd0e4); elsewhere a name query reads customers newest first until the page is
full, and a remark query reads the remarks once, not once per customer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, exists, false, select
from sqlalchemy.orm import Session

from bot.customers.staff import shown_name
from bot.db.models import Channel, Customer, FollowRelation, Staff, TierAssignment, TierTransition

PAGE = 50
EXPORT_CAP = 100_000  # rows in one .xlsx; a wider list is cut and says so
NO_TIER = "无"  # `from`/`to` of a move: the customer held no tier of the dimension

LossState = Literal["", "active", "lost", "lost_by_customer", "lost_by_staff"]
LOSS_STATES: dict[str, str] = {
    "active": "跟进中",
    "lost": "已流失（全部）",
    "lost_by_customer": "已流失·客户删员工",
    "lost_by_staff": "已流失·员工删客户",
}
LOST_REASONS: dict[str, str] = {
    "del_follow_user": "客户删员工",
    "del_external_contact": "员工删客户",
}


@dataclass(frozen=True)
class Move:
    """Customers a run moved between two tiers of one dimension (None = 无)."""

    run_id: int
    from_tier: str | None
    to_tier: str | None


@dataclass(frozen=True)
class CustomerFilter:
    """What the operator asked for; empty fields filter nothing."""

    q: str = ""
    dimension: str = ""
    tier: str = ""
    move: Move | None = None  # with `dimension`
    channel_id: int | None = None
    staff: str = ""  # a userid
    loss: LossState = ""
    added_from: date | None = None  # local days, both ends included
    added_to: date | None = None

    @property
    def active(self) -> bool:
        """Whether any filter is set."""
        return any(
            (
                self.q,
                self.tier,
                self.move,
                self.channel_id is not None,
                self.staff,
                self.loss,
                self.added_from,
                self.added_to,
            )
        )


@dataclass(frozen=True)
class ListedRelation:
    """One staff member who follows (or followed) a listed customer."""

    staff_userid: str
    staff_name: str
    channel: str
    remark: str
    added_at: datetime | None
    status: str  # active | lost
    lost_reason: str | None


@dataclass(frozen=True)
class ListedCustomer:
    """A customer row: who, whom they follow, through which channel, their tiers."""

    id: int
    external_userid: str
    name: str
    type: int  # 1 微信, 2 企业微信
    corp_name: str
    relations: tuple[ListedRelation, ...]
    tiers: dict[str, str] = field(default_factory=dict)  # dimension -> tier

    @property
    def first(self) -> ListedRelation | None:
        """The earliest relation: the channel the customer came through."""
        return self.relations[0] if self.relations else None

    @property
    def active(self) -> bool:
        """Still a friend of at least one staff member."""
        return any(r.status == "active" for r in self.relations)

    @property
    def loss_label(self) -> str:
        """跟进中, or how the last relation ended."""
        if self.active:
            return "跟进中"
        if not self.relations:
            return "无好友关系"
        last = self.relations[-1]  # relations come oldest first
        return "已流失·" + LOST_REASONS.get(last.lost_reason or "", "其他")

    @property
    def remarks(self) -> str:
        """The staff's remarks for this customer, distinct, joined."""
        return "，".join(dict.fromkeys(r.remark for r in self.relations if r.remark))


@dataclass(frozen=True)
class CustomerPage:
    """One page of the list and the id the next page starts below (None: last page)."""

    rows: tuple[ListedCustomer, ...]
    next_before: int | None


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _local_start(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


Search = Literal["name", "remark"]


def _conditions(
    f: CustomerFilter,
    *,
    tz: ZoneInfo,
    exact: bool = False,
    driven: bool = False,
    search: Search = "name",
) -> list[ColumnElement[bool]]:
    """Return the WHERE terms; `exact`: q is a known external_userid; `driven`: the tier
    (or move) is the query's driving table, not a term; `search`: where q is matched
    (the search is two queries, names and remarks)."""
    rel = FollowRelation
    out: list[ColumnElement[bool]] = []
    if f.q:
        if "\x00" in f.q:
            return [false()]  # no value holds NUL; PostgreSQL refuses it as a parameter
        if exact:
            rest = _conditions(replace(f, q=""), tz=tz, driven=driven)
            return [Customer.external_userid == f.q, *rest]
        pattern = _like(f.q)
        if search == "remark":
            remarked = select(rel.customer_id).where(rel.remark.like(pattern, escape="\\"))
            out.append(Customer.id.in_(remarked))
        else:
            out.append(Customer.name.like(pattern, escape="\\"))
    if f.tier and not (driven and f.dimension):
        ta = TierAssignment
        held = [ta.customer_id == Customer.id, ta.tier == f.tier]
        if f.dimension:  # without one: the tier in any dimension
            held.append(ta.dimension == f.dimension)
        out.append(exists().where(*held))
    if f.dimension and f.move is not None and not (driven and not f.tier):
        tt = TierTransition
        out.append(
            exists().where(
                tt.customer_id == Customer.id,
                tt.dimension == f.dimension,
                tt.run_id == f.move.run_id,
                tt.from_tier.is_(None)
                if f.move.from_tier is None
                else tt.from_tier == f.move.from_tier,
                tt.to_tier.is_(None) if f.move.to_tier is None else tt.to_tier == f.move.to_tier,
            )
        )
    # Staff, channel and the date added describe one relation together.
    per_relation: list[ColumnElement[bool]] = []
    if f.channel_id is not None:
        per_relation.append(rel.channel_id == f.channel_id)
    if f.staff:
        per_relation.append(
            rel.staff_id.in_(select(Staff.id).where(Staff.userid == f.staff).scalar_subquery())
        )
    if f.added_from is not None:
        per_relation.append(rel.added_at >= _local_start(f.added_from, tz))
    if f.added_to is not None:
        per_relation.append(rel.added_at < _local_start(f.added_to + timedelta(days=1), tz))
    if per_relation:
        out.append(exists().where(rel.customer_id == Customer.id, *per_relation))
    active = exists().where(rel.customer_id == Customer.id, rel.status == "active")
    if f.loss == "active":
        out.append(active)
    elif f.loss:
        ended = [rel.customer_id == Customer.id, rel.status != "active"]
        if f.loss == "lost_by_customer":
            ended.append(rel.lost_reason == "del_follow_user")
        elif f.loss == "lost_by_staff":
            ended.append(rel.lost_reason == "del_external_contact")
        out.append(and_(~active, exists().where(*ended)))
    return out


def _driver(f: CustomerFilter) -> tuple[Any, list[ColumnElement[bool]]] | None:
    """The indexed table a tier or move filter walks, keyed by customer id, and its terms."""
    if f.dimension and f.tier:
        ta = TierAssignment
        return ta.customer_id, [ta.dimension == f.dimension, ta.tier == f.tier]
    if f.dimension and f.move is not None:
        tt, m = TierTransition, f.move
        return tt.customer_id, [
            tt.run_id == m.run_id,
            tt.dimension == f.dimension,
            tt.from_tier.is_(None) if m.from_tier is None else tt.from_tier == m.from_tier,
            tt.to_tier.is_(None) if m.to_tier is None else tt.to_tier == m.to_tier,
        ]
    return None


def _exact(f: CustomerFilter, *, session: Session) -> bool:
    """Whether the search is a known external_userid (one index lookup)."""
    if not f.q or "\x00" in f.q:
        return False
    return session.scalar(select(Customer.id).where(Customer.external_userid == f.q)) is not None


def _ids(
    f: CustomerFilter,
    *,
    session: Session,
    tz: ZoneInfo,
    before: int | None,
    limit: int,
    exact: bool,
) -> list[int]:
    if f.q and not exact and "\x00" not in f.q:
        # Names or remarks: the newest `limit` of each, then the newest `limit` of both.
        found: set[int] = set()
        for search in ("name", "remark"):
            found.update(
                _query_ids(f, session=session, tz=tz, before=before, limit=limit, search=search)
            )
        return sorted(found, reverse=True)[:limit]
    return _query_ids(f, session=session, tz=tz, before=before, limit=limit, exact=exact)


def _query_ids(
    f: CustomerFilter,
    *,
    session: Session,
    tz: ZoneInfo,
    before: int | None,
    limit: int,
    exact: bool = False,
    search: Search = "name",
) -> list[int]:
    driver = _driver(f)
    terms = _conditions(f, tz=tz, exact=exact, driven=driver is not None, search=search)
    if driver is None:
        key: Any = Customer.id
        query = select(key)
    else:
        key, own = driver
        query = select(key).join(Customer, Customer.id == key).where(*own)
    query = query.where(*terms)
    if before is not None:
        query = query.where(key < before)
    return list(session.scalars(query.order_by(key.desc()).limit(limit)))


def _rows(
    ids: list[int], *, session: Session, display_names: Mapping[str, str]
) -> tuple[ListedCustomer, ...]:
    if not ids:
        return ()
    people = {c.id: c for c in session.scalars(select(Customer).where(Customer.id.in_(ids)))}
    relations: dict[int, list[ListedRelation]] = {}
    for rel, userid, staff_name, channel in session.execute(
        select(FollowRelation, Staff.userid, Staff.name, Channel.name)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .outerjoin(Channel, Channel.id == FollowRelation.channel_id)
        .where(FollowRelation.customer_id.in_(ids))
        .order_by(FollowRelation.added_at, FollowRelation.id)
    ):
        relations.setdefault(rel.customer_id, []).append(
            ListedRelation(
                staff_userid=userid,
                staff_name=shown_name(userid, staff_name, display_names),
                channel=channel or "",
                remark=rel.remark,
                added_at=rel.added_at,
                status=rel.status,
                lost_reason=rel.lost_reason,
            )
        )
    tiers: dict[int, dict[str, str]] = {}
    for cid, dim, tier in session.execute(
        select(TierAssignment.customer_id, TierAssignment.dimension, TierAssignment.tier).where(
            TierAssignment.customer_id.in_(ids)
        )
    ):
        tiers.setdefault(cid, {})[dim] = tier
    return tuple(
        ListedCustomer(
            id=c.id,
            external_userid=c.external_userid,
            name=c.name,
            type=c.type,
            corp_name=c.corp_name,
            relations=tuple(relations.get(c.id, ())),
            tiers=tiers.get(c.id, {}),
        )
        for c in (people[i] for i in ids if i in people)
    )


def search_customers(
    f: CustomerFilter,
    *,
    session: Session,
    tz: ZoneInfo,
    display_names: Mapping[str, str],
    before: int | None = None,
    limit: int = PAGE,
) -> CustomerPage:
    """Return one page of the customers `f` selects, newest first, below id `before`."""
    exact = _exact(f, session=session)
    ids = _ids(f, session=session, tz=tz, before=before, limit=limit + 1, exact=exact)
    more = len(ids) > limit
    ids = ids[:limit]
    rows = _rows(ids, session=session, display_names=display_names)
    return CustomerPage(rows, ids[-1] if more and ids else None)


def iter_customers(
    f: CustomerFilter,
    *,
    session: Session,
    tz: ZoneInfo,
    display_names: Mapping[str, str],
    cap: int = EXPORT_CAP,
    batch: int = 1000,
) -> Iterator[ListedCustomer]:
    """Yield every customer `f` selects, newest first, at most `cap` of them, in batches."""
    before: int | None = None
    left = cap
    exact = _exact(f, session=session)
    while left > 0:
        ids = _ids(f, session=session, tz=tz, before=before, limit=min(batch, left), exact=exact)
        if not ids:
            return
        yield from _rows(ids, session=session, display_names=display_names)
        left -= len(ids)
        before = ids[-1]


@dataclass(frozen=True)
class Choices:
    """What the filter form offers: channels and staff by name."""

    channels: tuple[tuple[int, str], ...]
    staff: tuple[tuple[str, str], ...]  # (userid, shown name)


def filter_choices(*, session: Session, display_names: Mapping[str, str]) -> Choices:
    """Return the channels and staff the filters may name."""
    channels = tuple(
        (int(i), n)
        for i, n in session.execute(select(Channel.id, Channel.name).order_by(Channel.name))
    )
    staff = tuple(
        (u, shown_name(u, n, display_names))
        for u, n in session.execute(select(Staff.userid, Staff.name).order_by(Staff.userid))
    )
    return Choices(channels, staff)


def any_customer(*, session: Session) -> bool:
    """Whether the database holds a customer at all (a fresh install holds none)."""
    return session.scalar(select(Customer.id).limit(1)) is not None

"""Process stored callbacks: one handler per 客户联系 change type (doc 92130, 92277).

The welcome message is the only time-critical step (its code dies 20 s after the scan),
so the add handler sends it before anything else that can wait; tags go to the outbox,
whose worker is woken at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from bot import catalogue, channels, contacts, inbox, outbox, welcome, welcome_lane, writelock
from bot.catalogue import TagPath
from bot.db.models import (
    Channel,
    Customer,
    FollowRelation,
    InboxEvent,
    RelationTag,
    Staff,
    TierAssignment,
)
from bot.db.types import utcnow
from bot.errors import CallbackError, WeComError
from bot.runtime import Runtime
from bot.wecom.events import CallbackEvent, parse_event
from bot.wecom.types import ExternalContact, FollowUser

log = logging.getLogger(__name__)

EXTERNAL_CONTACT = "change_external_contact"
EXTERNAL_TAG = "change_external_tag"

NO_RELATION = 84061  # WeCom: the customer is no longer anyone's friend here
LANE_WAIT = 5.0  # longest wait for the fast lane's welcome attempt for the same code

Handler = Callable[[Runtime, CallbackEvent, inbox.Claimed], None]


@dataclass(frozen=True)
class ChannelContext:
    """What the add handler needs from a channel, read once before any WeCom call."""

    id: int
    name: str
    welcome_text: str
    attachments: tuple[dict[str, Any], ...]
    tags: tuple[TagPath, ...]
    # (our tag id, WeCom tag id) per channel tag; None while one has no WeCom id
    tag_ids: tuple[tuple[int, str], ...] | None
    daily_cap: int | None


# Channels change rarely and every scan needs one: a short-lived cache saves the
# queries on the hot path; an edit shows up within CONTEXT_TTL seconds.
CONTEXT_TTL = 2.0
_contexts: dict[tuple[int, str], tuple[float, ChannelContext | None]] = {}
_contexts_lock = threading.Lock()


def _event_time(ev: CallbackEvent) -> datetime:
    if ev.create_time > 0:
        return datetime.fromtimestamp(ev.create_time, UTC)
    return utcnow()


def _load_context(session: Session, state: str) -> ChannelContext | None:
    channel = channels.get_by_state(state, session=session)
    if channel is None:
        return None
    paths = tuple(TagPath(t.group_name, t.tag_name) for t in channel.tags)
    found = [catalogue.find(session, p) for p in paths]
    return ChannelContext(
        id=channel.id,
        name=channel.name,
        welcome_text=channel.welcome_text,
        attachments=tuple(channel.welcome_attachments or ()),
        tags=paths,
        tag_ids=None
        if any(t is None or not t.wecom_tag_id for t in found)
        else tuple((t.id, t.wecom_tag_id or "") for t in found if t),
        daily_cap=channel.daily_cap,
    )


def channel_context(rt: Runtime, state: str) -> ChannelContext | None:
    """Return the channel a state belongs to, from a cache refreshed every few seconds."""
    if not state:
        return None
    key = (id(rt), state)
    now = time.monotonic()
    with _contexts_lock:
        hit = _contexts.get(key)
    if hit is not None and now - hit[0] < CONTEXT_TTL:
        return hit[1]
    with rt.db.read() as session:
        ctx = _load_context(session, state)
    with _contexts_lock:
        if len(_contexts) > 10_000:
            _contexts.clear()
        _contexts[key] = (now, ctx)
    return ctx


def _staff_name(session: Session, userid: str) -> str:
    name = session.scalars(select(Staff.name).where(Staff.userid == userid)).first()
    return name or userid


_staff_names: dict[tuple[int, str], tuple[float, str]] = {}


def staff_name(rt: Runtime, userid: str) -> str:
    """Return a member's display name for `{staff}`, cached like the channel context."""
    key = (id(rt), userid)
    hit = _staff_names.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < CONTEXT_TTL:
        return hit[1]
    with rt.db.read() as session:
        name = _staff_name(session, userid)
    if len(_staff_names) > 10_000:
        _staff_names.clear()
    _staff_names[key] = (now, name)
    return name


def _follow(contact: ExternalContact, userid: str) -> FollowUser | None:
    return next((f for f in contact.follow_users if f.userid == userid), None)


_RT = cast(Table, RelationTag.__table__)
_RELATION_TAG_IDS = select(_RT.c.tag_id).where(_RT.c.relation_id == bindparam("relation_id"))
_DROP_RELATION_TAGS = delete(_RT).where(
    _RT.c.relation_id == bindparam("relation_id"),
    _RT.c.tag_id.in_(bindparam("tag_ids", expanding=True)),
)


def set_relation_tags(session: Session, relation_id: int, wanted: set[int]) -> None:
    """Record exactly these tags (our ids) as the ones WeCom has on the relation."""
    have = set(session.scalars(_RELATION_TAG_IDS, {"relation_id": relation_id}))
    gone = have - wanted
    if gone:
        session.execute(_DROP_RELATION_TAGS, {"relation_id": relation_id, "tag_ids": list(gone)})
    now = utcnow()
    added = [{"relation_id": relation_id, "tag_id": t, "synced_at": now} for t in wanted - have]
    if added:
        session.execute(insert(_RT), added)


def _store_contact(
    session: Session,
    contact: ExternalContact,
    ev: CallbackEvent,
    channel_id: int | None,
    *,
    marked: Sequence[int] = (),
) -> tuple[Customer, FollowRelation, set[int]]:
    customer = contacts.upsert_customer(
        session=session,
        external_userid=ev.external_userid,
        unionid=contact.unionid or None,
        name=contact.name or None,
        type=contact.type,
        gender=contact.gender,
        avatar=contact.avatar or None,
        corp_name=contact.corp_name or None,
    )
    follow = _follow(contact, ev.userid)
    added = (
        datetime.fromtimestamp(follow.createtime, UTC)
        if follow is not None and follow.createtime
        else _event_time(ev)
    )
    extra: dict[str, Any] = {} if channel_id is None else {"channel_id": channel_id}
    relation = contacts.upsert_relation(
        session=session,
        staff_userid=ev.userid,
        customer=customer,
        state=ev.state or (follow.state if follow else None) or None,
        remark=follow.remark if follow else None,
        add_way=follow.add_way if follow else None,
        added_at=added if ev.change_type != "edit_external_contact" else None,
        **extra,
    )
    seen: set[int] = set()
    if follow is not None:
        seen = {t.id for t in catalogue.record_seen(session, follow.tags)}
    if follow is not None or marked:
        seen |= set(marked)  # what we just added ourselves (the fetch predates it)
        set_relation_tags(session, relation.id, seen)
    return customer, relation, seen


# --- handlers ------------------------------------------------------------------------


def _mark_directly(
    rt: Runtime, ev: CallbackEvent, ctx: ChannelContext | None, contact: ExternalContact
) -> list[int]:
    """Put the channel's missing tags on the new relation now; return our ids of those marked.

    One call right here is cheaper than a round through the outbox (two more
    transactions and a wake-up); a failure just leaves the work to the outbox.
    """
    if ctx is None or not ctx.tag_ids:
        return []
    follow = _follow(contact, ev.userid)
    present = {t.tag_id for t in follow.tags} if follow is not None else set()
    todo = [(our, wid) for our, wid in ctx.tag_ids if wid not in present]
    if not todo:
        return []
    try:
        rt.wecom.mark_tag(ev.userid, ev.external_userid, add=[wid for _, wid in todo])
    except WeComError as exc:
        log.info("mark_tag for %s deferred to the outbox: %s", ev.external_userid, exc)
        return []
    return [our for our, _ in todo]


def _fetch_contact(rt: Runtime, ev: CallbackEvent) -> ExternalContact | None:
    """Return the customer, or None when they deleted every member before we asked."""
    try:
        return rt.wecom.get_external_contact(ev.external_userid)
    except WeComError as exc:
        if exc.errcode != NO_RELATION:
            raise
        log.info("%s %s: customer already gone (%s)", ev.change_type, ev.external_userid, exc)
        return None


def send_welcome(rt: Runtime, ev: CallbackEvent, received_at: datetime) -> ExternalContact | None:
    """Send the channel's welcome for an add event; return the customer if it was fetched."""
    ctx = channel_context(rt, ev.state)
    if not ev.welcome_code or ctx is None or not (ctx.welcome_text or ctx.attachments):
        return None
    contact: ExternalContact | None = None
    member = staff_name(rt, ev.userid) if "{staff}" in ctx.welcome_text else ev.userid
    if welcome.needs_customer(ctx.welcome_text):
        contact = _fetch_contact(rt, ev)
        if contact is None:
            return None  # nobody to welcome
    text = welcome.render(
        ctx.welcome_text,
        customer_name=contact.name if contact is not None else "",
        staff_name=member,
    )
    welcome.send(
        rt.wecom,
        welcome_code=ev.welcome_code,
        text=text,
        attachments=ctx.attachments,
        received_at=received_at,
    )
    return contact


def on_add(rt: Runtime, ev: CallbackEvent, item: inbox.Claimed) -> None:
    """A customer added a member: welcome, record the relation, tag it with the channel's tags."""
    ctx = channel_context(rt, ev.state)
    contact: ExternalContact | None = None
    if ev.welcome_code:
        lane = welcome_lane.lane_for(rt)
        if lane.take_code(ev.welcome_code):
            try:
                contact = send_welcome(rt, ev, item.received_at)
            except WeComError:
                lane.release(ev.welcome_code)  # a retry of this event must try again
                raise
            lane.finish(ev.welcome_code, contact)
        else:  # the fast lane has it; reuse the customer it fetched rather than fetch twice
            contact = lane.contact_for(ev.welcome_code, wait=LANE_WAIT)
    if contact is None:
        contact = _fetch_contact(rt, ev)
    if contact is None:  # the customer left before we got here: the deletion event tells it
        with writelock.begin(rt.db) as session:
            inbox.finish(session, item)
        return
    marked = _mark_directly(rt, ev, ctx, contact)
    queued = False
    with channels.begin_with_wecom(rt.db, rt.wecom) as session:
        _, _, have = _store_contact(session, contact, ev, ctx.id if ctx else None, marked=marked)
        if ctx is not None:
            if ctx.tag_ids is None:  # a channel tag was deleted in WeCom: create it again
                tag_ids = [
                    t.id for t in catalogue.ensure(session=session, wecom=rt.wecom, paths=ctx.tags)
                ]
            else:
                tag_ids = [our for our, _ in ctx.tag_ids]
            # Whatever the direct call could not do goes to the outbox, which retries.
            missing = [t for t in tag_ids if t not in have]
            queued = (
                outbox.enqueue_tag_ids(
                    session=session,
                    staff_userid=ev.userid,
                    external_userid=ev.external_userid,
                    add=missing,
                )
                is not None
            )
            channels.record_scan(ctx.id, session=session)
        inbox.finish(session, item)
    if queued:
        rt.wakeups.outbox.set()
    if ctx is not None and ctx.daily_cap:
        try:
            channels.rotate(ctx.id, db=rt.db, wecom=rt.wecom, tz=rt.settings.tz)
        except WeComError as exc:  # the upkeep job tries again; the scan itself is done
            log.warning("channel %s: rotation failed: %s", ctx.name, exc)


def on_edit(rt: Runtime, ev: CallbackEvent, item: inbox.Claimed) -> None:
    """A member edited the customer's remark or tags by hand: re-read that relation."""
    contact = _fetch_contact(rt, ev)
    with writelock.begin(rt.db) as session:
        if contact is not None:
            _store_contact(session, contact, ev, None)
        inbox.finish(session, item)


def _lost_notice(
    session: Session, relation: FollowRelation | None, ev: CallbackEvent, tz: ZoneInfo
) -> str:
    """Write the 流失 alert for the staff member, in Chinese."""
    customer = session.scalars(
        select(Customer).where(Customer.external_userid == ev.external_userid)
    ).first()
    name = (customer.name if customer else "") or ev.external_userid
    channel_name = "无"
    if relation is not None and relation.channel_id is not None:
        channel_name = (
            session.scalars(select(Channel.name).where(Channel.id == relation.channel_id)).first()
            or "无"
        )
    tiers: list[str] = []
    if customer is not None:
        rows = session.execute(
            select(TierAssignment.dimension, TierAssignment.tier)
            .where(TierAssignment.customer_id == customer.id)
            .order_by(TierAssignment.dimension)
        ).all()
        tiers = [f"{dim}：{tier}" for dim, tier in rows]
    when = _event_time(ev).astimezone(tz).strftime("%Y-%m-%d %H:%M")
    return (
        f"客户 {name} 已将你删除\n"
        f"来源渠道：{channel_name}\n"
        f"客户分层：{'、'.join(tiers) if tiers else '暂无'}\n"
        f"时间：{when}"
    )


def on_customer_deleted_staff(rt: Runtime, ev: CallbackEvent, item: inbox.Claimed) -> None:
    """The customer deleted the member (流失): mark lost, count it, tell the member."""
    with writelock.begin(rt.db) as session:
        relation = contacts.mark_relation_lost(
            session=session,
            staff_userid=ev.userid,
            external_userid=ev.external_userid,
            reason="del_follow_user",
            at=_event_time(ev),
        )
        notice = _lost_notice(session, relation, ev, rt.settings.tz)
    # Sent before the event is marked done: a crash in between repeats the alert
    # rather than losing it.
    rt.wecom.send_app_message([ev.userid], text=notice)
    with writelock.begin(rt.db) as session:
        inbox.finish(session, item)


def on_staff_deleted_customer(rt: Runtime, ev: CallbackEvent, item: inbox.Claimed) -> None:
    """The member deleted the customer (or a handover removed them): mark the relation lost."""
    reason = "transferred" if ev.source == "DELETE_BY_TRANSFER" else "del_external_contact"
    with writelock.begin(rt.db) as session:
        contacts.mark_relation_lost(
            session=session,
            staff_userid=ev.userid,
            external_userid=ev.external_userid,
            reason=reason,
            at=_event_time(ev),
        )
        inbox.finish(session, item)


def on_transfer_fail(rt: Runtime, ev: CallbackEvent, item: inbox.Claimed) -> None:
    """A handover failed: record why on the relation."""
    with writelock.begin(rt.db) as session:
        relation_id = session.scalars(
            select(FollowRelation.id)
            .join(Staff, Staff.id == FollowRelation.staff_id)
            .join(Customer, Customer.id == FollowRelation.customer_id)
            .where(Staff.userid == ev.userid, Customer.external_userid == ev.external_userid)
        ).first()
        if relation_id is not None:
            session.execute(
                update(FollowRelation)
                .where(FollowRelation.id == relation_id)
                .values(transfer_fail_reason=(ev.fail_reason or "unknown")[:32])
                .execution_options(synchronize_session=False)
            )
        else:
            log.info("transfer_fail for an unknown relation %s/%s", ev.userid, ev.external_userid)
        inbox.finish(session, item)


def on_tag_change(rt: Runtime, ev: CallbackEvent, item: inbox.Claimed) -> None:
    """Tags or groups changed in WeCom: refresh the whole catalogue once for the burst."""
    started = utcnow()
    groups = rt.wecom.get_corp_tag_list()
    with writelock.begin(rt.db) as session:
        catalogue.apply_groups(session, groups, complete=True)
        inbox.finish(session, item)
        # Tag events that arrived before this read are answered by it too.
        session.execute(
            update(InboxEvent)
            .where(
                InboxEvent.event == EXTERNAL_TAG,
                InboxEvent.status == inbox.PENDING,
                InboxEvent.received_at <= started,
                InboxEvent.id != item.id,
            )
            .values(status=inbox.DONE, processed_at=utcnow(), last_error=None)
            .execution_options(synchronize_session=False)
        )


HANDLERS: dict[tuple[str, str], Handler] = {
    (EXTERNAL_CONTACT, "add_external_contact"): on_add,
    (EXTERNAL_CONTACT, "add_half_external_contact"): on_add,
    (EXTERNAL_CONTACT, "edit_external_contact"): on_edit,
    (EXTERNAL_CONTACT, "del_follow_user"): on_customer_deleted_staff,
    (EXTERNAL_CONTACT, "del_external_contact"): on_staff_deleted_customer,
    (EXTERNAL_CONTACT, "transfer_fail"): on_transfer_fail,
    (EXTERNAL_TAG, "create"): on_tag_change,
    (EXTERNAL_TAG, "update"): on_tag_change,
    (EXTERNAL_TAG, "delete"): on_tag_change,
    (EXTERNAL_TAG, "shuffle"): on_tag_change,
}


def process(rt: Runtime, item: inbox.Claimed) -> None:
    """Run the handler for one claimed event and record the outcome; never raises."""
    try:
        ev = parse_event(item.payload)
        handler = HANDLERS.get((ev.event, ev.change_type))
        if handler is None:
            with writelock.begin(rt.db) as session:
                inbox.finish(session, item, handled=False)
            return
        handler(rt, ev, item)
    except WeComError as exc:
        _failed(rt, item, str(exc), retryable=exc.retryable)
    except CallbackError as exc:  # stored payload no longer parses: retrying cannot help
        _failed(rt, item, str(exc), retryable=False)
    except Exception as exc:
        log.exception("inbox event %d failed", item.id)
        _failed(rt, item, f"{type(exc).__name__}: {exc}", retryable=True)


def _failed(rt: Runtime, item: inbox.Claimed, error: str, *, retryable: bool) -> None:
    with writelock.begin(rt.db) as session:
        dead = inbox.fail(session, item, error, retryable=retryable)
    log.warning("inbox event %d %s: %s", item.id, "dead" if dead else "will retry", error)


def process_next(rt: Runtime, *, limit: int = 1, ids: Sequence[int] = ()) -> int:
    """Claim and process due events (or these handed-off ids); return how many were taken."""
    with writelock.begin(rt.db) as session:
        items = inbox.claim(session, limit=limit, ids=ids)
    for item in items:
        process(rt, item)
    return len(items)

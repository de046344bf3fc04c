"""The 客户联系 change events (doc 92130): a customer added, edited, deleted, handed over.

The welcome message is the only time-critical step (its code dies 20 s after the scan),
so the add handler sends it before anything else that can wait; tags go to the outbox,
whose worker is woken at once.

Each handler ends in the write that records its effect, and calls `finish(session)`
there: bot.callbacks.dispatch passes it, marking the stored event done in the same
transaction.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import staff_alerts, touched
from bot.channels import live_codes, rotation
from bot.channels.welcome import ChannelContext, ContextCache, MissedTally, channel_context
from bot.channels.welcome_lane import WelcomeLane
from bot.config import Settings
from bot.customers import contacts, scan_store
from bot.customers.customer_fetch import fetch_contact
from bot.customers.scan_welcome import send_once
from bot.db import Database
from bot.db.models import Customer, FollowRelation
from bot.db.types import utcnow
from bot.errors import WeComError
from bot.groups import channel_tags as group_channel_tags
from bot.tags import catalogue, outbox
from bot.wecom.client import WeComClient
from bot.wecom.events import CallbackEvent
from bot.wecom.types import ExternalContact, FollowUser

log = logging.getLogger(__name__)

LANE_WAIT = 5.0  # longest wait for the fast lane's welcome attempt for the same code

Finish = Callable[[Session], None]  # marks the stored event done, inside the handler's write


def _event_time(ev: CallbackEvent) -> datetime:
    if ev.create_time > 0:
        return datetime.fromtimestamp(ev.create_time, UTC)
    return utcnow()


def _follow(contact: ExternalContact, userid: str) -> FollowUser | None:
    return next((f for f in contact.follow_users if f.userid == userid), None)


def _profile(contact: ExternalContact) -> dict[str, Any]:
    return {
        "unionid": contact.unionid or None,
        "name": contact.name or None,
        "type": contact.type,
        "gender": contact.gender,
        "avatar": contact.avatar or None,
        "corp_name": contact.corp_name or None,
    }


def _added_at(ev: CallbackEvent, follow: FollowUser | None) -> datetime | None:
    if ev.change_type == "edit_external_contact":
        return None
    if follow is not None and follow.createtime:
        return datetime.fromtimestamp(follow.createtime, UTC)
    return _event_time(ev)


def _store_contact(
    contact: ExternalContact,
    ev: CallbackEvent,
    channel_id: int | None,
    *,
    session: Session,
    marked: Sequence[int] = (),
    applies_channel: bool = False,
) -> tuple[Customer, FollowRelation, set[int]]:
    customer = contacts.upsert_customer(
        session=session, external_userid=ev.external_userid, **_profile(contact)
    )
    follow = _follow(contact, ev.userid)
    extra: dict[str, Any] = {} if channel_id is None else {"channel_id": channel_id}
    relation = contacts.upsert_relation(
        session=session,
        staff_userid=ev.userid,
        customer=customer,
        state=ev.state or (follow.state if follow else None) or None,
        remark=follow.remark if follow else None,
        add_way=follow.add_way if follow else None,
        added_at=_added_at(ev, follow),
        # An add event applies its channel: a later sync must not apply it again.
        channel_applied_at=utcnow() if applies_channel else None,
        **extra,
    )
    seen: set[int] = set()
    if follow is not None:
        seen = {t.id for t in catalogue.record_seen(session, follow.tags)}
    if follow is not None or marked:
        seen |= set(marked)  # what we just added ourselves (the fetch predates it)
        contacts.set_relation_tags(relation.id, seen, session=session)
    return customer, relation, seen


def _mark_directly(
    ev: CallbackEvent, ctx: ChannelContext | None, contact: ExternalContact, *, wecom: WeComClient
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
        wecom.mark_tag(ev.userid, ev.external_userid, add=[wid for _, wid in todo])
    except WeComError as exc:
        log.info("mark_tag for %s deferred to the outbox: %s", ev.external_userid, exc)
        return []
    return [our for our, _ in todo]


def on_add(
    ev: CallbackEvent,
    *,
    received_at: datetime,
    finish: Finish,
    finish_sql: scan_store.FinishSql,
    db: Database,
    wecom: WeComClient,
    settings: Settings,
    lane: WelcomeLane,
    cache: ContextCache,
    missed: MissedTally,
    outbox_wakeup: threading.Event,
) -> None:
    """A customer added a member: welcome, record the relation, tag it with the channel's tags."""
    ctx = channel_context(ev.state, db=db, cache=cache)
    contact: ExternalContact | None = None
    if ev.welcome_code:
        taken = send_once(
            ev,
            received_at,
            db=db,
            wecom=wecom,
            settings=settings,
            lane=lane,
            cache=cache,
            missed=missed,
        )  # a WeComError fails the event: its retry must try the welcome again
        if taken is not None:
            contact = taken.contact
        else:  # the fast lane has it; reuse the customer it fetched rather than fetch twice
            contact = lane.contact_for(ev.welcome_code, wait=LANE_WAIT)
    if contact is None:
        contact = fetch_contact(ev, wecom=wecom)
    if contact is None:  # the customer left before we got here: the deletion event tells it
        with db.write() as session:
            finish(session)
        return
    marked = _mark_directly(ev, ctx, contact, wecom=wecom)
    tag_ids: list[int] = []
    if ctx is not None:
        if ctx.tag_ids is None:  # a channel tag was deleted in WeCom: create it again
            tag_ids = catalogue.ensure(db=db, wecom=wecom, paths=ctx.tags)
        else:
            tag_ids = [our for our, _ in ctx.tag_ids]
    if not _store_new(ev, contact, ctx, tag_ids, marked, db=db, finish_sql=finish_sql):
        queued, joins_due = _store_any(ev, contact, ctx, tag_ids, marked, db=db, finish=finish)
        if queued:
            outbox_wakeup.set()
        if joins_due:
            _tag_group_joins(ev, db=db, wecom=wecom, outbox_wakeup=outbox_wakeup)
    if ctx is not None and ctx.daily_cap:
        try:
            rotation.rotate(ctx.id, db=db, wecom=wecom, tz=settings.tz)
        except WeComError as exc:  # the upkeep job tries again; the scan itself is done
            log.warning("channel %s: rotation failed: %s", ctx.name, exc)


def _store_new(
    ev: CallbackEvent,
    contact: ExternalContact,
    ctx: ChannelContext | None,
    tag_ids: Sequence[int],
    marked: Sequence[int],
    *,
    db: Database,
    finish_sql: scan_store.FinishSql,
) -> bool:
    """Store a new customer's scan on the driver (scan_store); False when it needs `_store_any`."""
    follow = _follow(contact, ev.userid)
    relation = {
        "state": ev.state or (follow.state if follow else None) or None,
        "remark": follow.remark if follow else None,
        "add_way": follow.add_way if follow else None,
        "added_at": _added_at(ev, follow),
    }
    new = scan_store.NewContact(
        external_userid=ev.external_userid,
        customer=scan_store.customer_fields(_profile(contact)),
        staff_userid=ev.userid,
        relation={k: v for k, v in relation.items() if v is not None},
        channel_id=ctx.id if ctx else None,
        follow=follow,
        marked=marked,
        channel_tag_ids=tag_ids if ctx is not None else None,
    )
    try:
        with db.write_driver() as txn:
            scan_store.store(new, txn=txn, finish=finish_sql)
    except scan_store.Unusual:
        return False
    return True


def _store_any(
    ev: CallbackEvent,
    contact: ExternalContact,
    ctx: ChannelContext | None,
    tag_ids: Sequence[int],
    marked: Sequence[int],
    *,
    db: Database,
    finish: Finish,
) -> tuple[bool, bool]:
    """Store any scan through a session; say whether tags went to the outbox, and whether
    group joins of theirs await their channel's tags (`_tag_group_joins`)."""
    queued = False
    with db.write() as session:
        customer, relation, have = _store_contact(
            contact,
            ev,
            ctx.id if ctx else None,
            session=session,
            marked=marked,
            applies_channel=True,
        )
        # They joined a group through a channel's group code before being anyone's customer.
        joins_due = contacts.group_joins_due(customer, relation, session=session)
        # A new friend's tiers (潜在客户, 首次渠道, staff_count…) follow within the minute,
        # not at the next nightly run: the touched re-tier takes them from here.
        touched.touch([customer.id], session=session)
        if ctx is not None:
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
            live_codes.record_scan(ctx.id, session=session)
        finish(session)
    return queued, joins_due


def _tag_group_joins(
    ev: CallbackEvent, *, db: Database, wecom: WeComClient, outbox_wakeup: threading.Event
) -> None:
    """Queue the channel tags of the new customer's earlier group joins (the add is recorded)."""
    try:
        tagged = group_channel_tags.apply_pending(
            db=db, wecom=wecom, external_userids=[ev.external_userid]
        )
    except Exception:  # the add itself is done; the next sync applies what is left
        log.exception("group joins of %s left for the sync", ev.external_userid)
        return
    if tagged.operations:
        outbox_wakeup.set()


def on_edit(ev: CallbackEvent, *, finish: Finish, db: Database, wecom: WeComClient) -> None:
    """A member edited the customer's remark or tags by hand: re-read that relation."""
    contact = fetch_contact(ev, wecom=wecom)
    with db.write() as session:
        if contact is not None:
            _store_contact(contact, ev, None, session=session)
        finish(session)


def on_customer_deleted_staff(
    ev: CallbackEvent,
    *,
    finish: Finish,
    db: Database,
    settings: Settings,
    alerts_wakeup: threading.Event,
) -> None:
    """The customer deleted the member (流失): mark lost, count it, queue the member's alert."""
    with db.write() as session:
        relation = contacts.mark_relation_lost(
            session=session,
            staff_userid=ev.userid,
            external_userid=ev.external_userid,
            reason="del_follow_user",
            at=_event_time(ev),
        )
        notice = contacts.lost_notice(
            session=session,
            relation=relation,
            external_userid=ev.external_userid,
            at=_event_time(ev),
            tz=settings.tz,
        )
        name = session.scalars(
            select(Customer.name).where(Customer.external_userid == ev.external_userid)
        ).first()
        # Queued with the event's end: many deletions in a minute become one message,
        # under the limit past which WeCom drops app messages without a word.
        staff_alerts.enqueue(
            session=session,
            userid=ev.userid,
            kind=staff_alerts.CUSTOMER_LOST,
            subject=name or ev.external_userid,
            text=notice,
        )
        finish(session)
    alerts_wakeup.set()


def on_staff_deleted_customer(ev: CallbackEvent, *, finish: Finish, db: Database) -> None:
    """The member deleted the customer (or a handover removed them): mark the relation lost."""
    reason = "transferred" if ev.source == "DELETE_BY_TRANSFER" else "del_external_contact"
    with db.write() as session:
        contacts.mark_relation_lost(
            session=session,
            staff_userid=ev.userid,
            external_userid=ev.external_userid,
            reason=reason,
            at=_event_time(ev),
        )
        finish(session)


def on_transfer_fail(ev: CallbackEvent, *, finish: Finish, db: Database) -> None:
    """A handover failed: record why on the relation."""
    with db.write() as session:
        known = contacts.record_transfer_fail(
            session=session,
            staff_userid=ev.userid,
            external_userid=ev.external_userid,
            reason=ev.fail_reason or "unknown",
        )
        if not known:
            log.info("transfer_fail for an unknown relation %s/%s", ev.userid, ev.external_userid)
        finish(session)

"""Full sync from WeCom: staff, the tag catalogue, and every relation with its tags.

Calls, in order (each page is one call, so a corp of S staff and R relations costs about
2 + ceil(S/100) + R/100 calls):
- externalcontact/get_follow_user_list: who has 客户联系 (others become inactive);
- externalcontact/get_corp_tag_list: the whole catalogue (tags WeCom no longer has are
  marked deleted);
- externalcontact/batch/get_by_user: 100 staff per call, 100 relations per page, cursor
  paging; each page carries the customer (with unionid) and that member's tag ids.
https://developer.work.weixin.qq.com/document/path/92571, 92117, 92994

Then the channel of every relation a scan made while the bot was down (its callback never
arrived) is applied from the relation's `state` (`bot.channels.missed_scans`): the
channel's tags are queued in the outbox, the first run after the outage only.

Last, every customer group (`bot.groups.sync`): groupchat/list by owner, then
groupchat/get per group (one call each); their stays are reconciled, and the channel
tags of group joins whose member has become somebody's customer are queued.

Safe while serving: no transaction is open during a WeCom call, and each page is applied
in its own short transaction. Relations are only marked lost after every page of their
staff member was read, so an interrupted sync loses nothing. Idempotent: a second run
against an unchanged corp changes no row.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot import leases
from bot.channels import missed_scans
from bot.customers import contacts
from bot.db import Database
from bot.db.models import Channel, Customer, FollowRelation, RelationTag, Staff, Tag
from bot.db.types import utcnow
from bot.errors import TagbotError
from bot.groups.sync import sync_groups
from bot.tags import catalogue
from bot.wecom.client import WeComClient, counting_calls
from bot.wecom.types import ContactFollow
from bot.wecom_limits import BATCH_GET_PAGE_MAX, BATCH_GET_USERS_MAX

log = logging.getLogger("tagbot.sync")

LEASE = "sync"
LEASE_TTL = 15 * 60.0
LOST_REASON = "sync"  # the relation was absent from WeCom's full list
# A relation WeCom lists as added this much later than we recorded was added again (the
# customer left and came back): the channel of that new add is still to apply.
READDED = timedelta(minutes=1)


@dataclass
class SyncReport:
    """What one sync changed, and what it cost in WeCom calls."""

    staff: int = 0
    staff_added: int = 0
    staff_deactivated: int = 0
    tags: int = 0
    customers_added: int = 0
    customers_updated: int = 0
    relations: int = 0
    relations_added: int = 0
    relations_updated: int = 0
    relations_lost: int = 0
    relation_tags_added: int = 0
    relation_tags_removed: int = 0
    unknown_tag_ids: int = 0  # ids on relations that the catalogue doesn't list
    orphans_linked: int = 0
    # relations (and their customers) whose scan's callback never arrived: channel applied now
    missed_scans: int = 0
    missed_scan_customers: int = 0
    missed_scan_operations: int = 0
    # customer groups (客户群): read, added, changed (name, owner, notice), dismissed; stays
    # opened, closed and updated; joins given their channel's tags
    groups: int = 0
    groups_added: int = 0
    groups_updated: int = 0
    groups_dismissed: int = 0
    group_joins: int = 0
    group_leaves: int = 0
    group_stays_updated: int = 0
    group_joins_tagged: int = 0
    group_join_customers: int = 0
    group_join_operations: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def changed(self) -> int:
        """Rows this run changed (0 on a second run against an unchanged corp)."""
        return (
            self.staff_added
            + self.staff_deactivated
            + self.customers_added
            + self.customers_updated
            + self.relations_added
            + self.relations_updated
            + self.relations_lost
            + self.relation_tags_added
            + self.relation_tags_removed
            + self.missed_scans
            + self.groups_added
            + self.groups_updated
            + self.groups_dismissed
            + self.group_joins
            + self.group_leaves
            + self.group_stays_updated
            + self.group_joins_tagged
        )


ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


def run_sync(
    *,
    db: Database,
    wecom: WeComClient,
    on_progress: ProgressFn | None = None,
    owner: str | None = None,
) -> SyncReport:
    """Pull staff, tag catalogue and relations from WeCom into the database."""
    owner = owner or f"{socket.gethostname()}:{os.getpid()}"
    with leases.holding(db, LEASE, owner, LEASE_TTL) as held:
        if not held:
            raise TagbotError("另一个同步正在进行 / another sync is running; try again later")
        with counting_calls() as calls:
            report = _run(db, wecom, on_progress or (lambda *_: None), held)
        report.calls = dict(calls)
    _log_done(report)
    return report


def _run(db: Database, wecom: WeComClient, progress: ProgressFn, lease: leases.Held) -> SyncReport:
    started = time.monotonic()
    report = SyncReport()

    userids = list(dict.fromkeys(wecom.get_follow_user_list()))
    report.staff = len(userids)
    with db.write() as session:
        staff_ids = _sync_staff(userids, report, session=session)

    groups = wecom.get_corp_tag_list()
    with db.write() as session:
        report.tags = catalogue.apply_groups(session, groups, complete=True)
        # A tag deleted in WeCom is gone from every customer, read this run or not.
        removed = session.execute(
            delete(RelationTag)
            .where(RelationTag.tag_id.in_(select(Tag.id).where(Tag.deleted.is_(True))))
            .execution_options(synchronize_session=False)
        )
        report.relation_tags_removed += removed.rowcount or 0  # type: ignore[attr-defined]
        tag_ids = dict(
            session.execute(
                select(Tag.wecom_tag_id, Tag.id).where(
                    Tag.deleted.is_(False), Tag.wecom_tag_id.is_not(None)
                )
            ).all()
        )
        channels = dict(session.execute(select(Channel.state, Channel.id)).all())

    progress("relations", 0, len(userids))
    for start in range(0, len(userids), BATCH_GET_USERS_MAX):
        chunk = userids[start : start + BATCH_GET_USERS_MAX]
        chunk_staff = [staff_ids[u] for u in chunk]
        # Only relations active before the first page can be lost: one a callback adds
        # while the pages are read is absent from them but very much alive.
        with db.read() as session:
            before = _active_relations(chunk_staff, session=session)
        seen: set[int] = set()
        cursor = ""
        cursors: set[str] = set()
        while True:
            items, cursor = wecom.batch_get_by_user(chunk, cursor, BATCH_GET_PAGE_MAX)
            seen |= _apply_page_retrying(db, items, staff_ids, tag_ids, channels, report)
            _renew(lease)
            if not cursor or cursor in cursors:
                break
            cursors.add(cursor)
        # Every page of these staff was read: what WeCom no longer lists is gone.
        with db.write() as session:
            _mark_lost(before - seen, report, session=session)
        progress("relations", min(start + BATCH_GET_USERS_MAX, len(userids)), len(userids))

    missed = missed_scans.apply_missed(db=db, wecom=wecom)
    report.missed_scans = missed.relations
    report.missed_scan_customers = missed.customers
    report.missed_scan_operations = missed.operations

    chats = sync_groups(db=db, wecom=wecom, owners=userids, renew=lambda: _renew(lease))
    report.groups = chats.groups
    report.groups_added = chats.applied.groups_added
    report.groups_updated = chats.applied.groups_updated
    report.groups_dismissed = chats.applied.dismissed
    report.group_joins = chats.applied.joined
    report.group_leaves = chats.applied.left
    report.group_stays_updated = chats.applied.stays_updated
    report.group_joins_tagged = chats.tagged.stays
    report.group_join_customers = chats.tagged.customers
    report.group_join_operations = chats.tagged.operations

    report.seconds = time.monotonic() - started
    return report


def _renew(lease: leases.Held) -> None:
    try:
        lease.renew()
    except leases.LeaseLostError as exc:
        raise TagbotError("同步租约已被另一个同步接管 / the sync lease expired") from exc


def _log_done(report: SyncReport) -> None:
    log.info(
        "sync done in %.1fs with %d WeCom calls: %d staff, %d tags, %d relations; "
        "%d changes (%d customers added, %d relations added, %d lost); "
        "%d relations of %d customers whose add callback never arrived given their channel; "
        "%d groups (%d added, %d dismissed), %d joins and %d leaves absorbed, "
        "%d group joins given their channel",
        report.seconds,
        report.total_calls,
        report.staff,
        report.tags,
        report.relations,
        report.changed,
        report.customers_added,
        report.relations_added,
        report.relations_lost,
        report.missed_scans,
        report.missed_scan_customers,
        report.groups,
        report.groups_added,
        report.groups_dismissed,
        report.group_joins,
        report.group_leaves,
        report.group_joins_tagged,
    )


def _sync_staff(userids: Sequence[str], report: SyncReport, *, session: Session) -> dict[str, int]:
    """Add new staff, reactivate returning ones, deactivate those WeCom no longer lists."""
    known = {s.userid: s for s in session.scalars(select(Staff))}
    listed = set(userids)
    for userid in userids:
        member = known.get(userid)
        if member is None:
            member = Staff(userid=userid, active=True)
            session.add(member)
            known[userid] = member
            report.staff_added += 1
        elif not member.active:
            member.active = True
            report.staff_added += 1
    for userid, member in known.items():
        if userid not in listed and member.active:
            member.active = False
            report.staff_deactivated += 1
    session.flush()
    return {u: known[u].id for u in userids}


def _epoch(seconds: int) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None


def _apply_page_retrying(
    db: Database,
    items: Sequence[ContactFollow],
    staff_ids: dict[str, int],
    tag_ids: dict[str | None, int],
    channels: dict[str, int],
    report: SyncReport,
) -> set[int]:
    """Apply a page; retry once when a callback inserted the same customer meanwhile."""
    try:
        with db.write() as session:
            return _apply_page(items, staff_ids, tag_ids, channels, report, session=session)
    except IntegrityError:
        log.info("page raced with a concurrent writer; applying it again")
        with db.write() as session:
            return _apply_page(items, staff_ids, tag_ids, channels, report, session=session)


def _apply_page(
    items: Sequence[ContactFollow],
    staff_ids: dict[str, int],
    tag_ids: dict[str | None, int],
    channels: dict[str, int],
    report: SyncReport,
    *,
    session: Session,
) -> set[int]:
    """Store one page of (customer, member) pairs; return the relation ids it holds."""
    exts = list({i.contact.external_userid for i in items if i.contact.external_userid})
    customers = {
        c.external_userid: c
        for c in session.scalars(select(Customer).where(Customer.external_userid.in_(exts)))
    }
    new_or_relinked: list[Customer] = []
    for item in items:
        c = item.contact
        if not c.external_userid or (
            c.external_userid in customers and not _changed(customers[c.external_userid], item)
        ):
            continue
        customer = customers.get(c.external_userid)
        if customer is None:
            customer = Customer(external_userid=c.external_userid)
            session.add(customer)
            customers[c.external_userid] = customer
            report.customers_added += 1
            new_or_relinked.append(customer)
        else:
            report.customers_updated += 1
            if (c.unionid or None) != customer.unionid:
                new_or_relinked.append(customer)
        customer.unionid = c.unionid or None
        customer.name, customer.type, customer.gender = c.name, c.type, c.gender
        customer.avatar, customer.corp_name = c.avatar, c.corp_name
    session.flush()
    if new_or_relinked:
        report.orphans_linked += contacts.link_orphans_of(
            [c.external_userid for c in new_or_relinked],
            [c.unionid for c in new_or_relinked if c.unionid],
            session=session,
        )

    pairs = [
        (staff_ids[i.follow_info.userid], customers[i.contact.external_userid].id, i)
        for i in items
        if i.follow_info.userid in staff_ids and i.contact.external_userid in customers
    ]
    customer_ids = list({cid for _, cid, _ in pairs})
    relations = {
        (r.staff_id, r.customer_id): r
        for r in session.scalars(
            select(FollowRelation).where(FollowRelation.customer_id.in_(customer_ids))
        )
    }
    seen: set[int] = set()
    for staff_id, customer_id, item in pairs:
        info = item.follow_info
        relation = relations.get((staff_id, customer_id))
        if relation is None:
            relation = FollowRelation(staff_id=staff_id, customer_id=customer_id, status="active")
            session.add(relation)
            relations[(staff_id, customer_id)] = relation
            report.relations_added += 1
            changed = True
        else:
            changed = False
        wanted = {
            "state": info.state,
            "remark": info.remark[:128],
            "add_way": info.add_way,
            "added_at": _epoch(info.createtime),
            "status": "active",
            "lost_at": None,
            "lost_reason": None,
        }
        if info.state in channels:
            wanted["channel_id"] = channels[info.state]
        if _added_again(relation, info.createtime):
            wanted["channel_applied_at"] = None
        for attr, value in wanted.items():
            if getattr(relation, attr) != value:
                setattr(relation, attr, value)
                changed = True
        if changed and relation.id is not None:
            report.relations_updated += 1
    session.flush()
    report.relations += len(pairs)

    current: dict[int, set[int]] = {}
    relation_ids = [relations[(s, c)].id for s, c, _ in pairs]
    for relation_id, tag_id in session.execute(
        select(RelationTag.relation_id, RelationTag.tag_id).where(
            RelationTag.relation_id.in_(relation_ids)
        )
    ):
        current.setdefault(relation_id, set()).add(tag_id)
    now = utcnow()
    for staff_id, customer_id, item in pairs:
        relation_id = relations[(staff_id, customer_id)].id
        seen.add(relation_id)
        wanted_tags: set[int] = set()
        for wecom_tag_id in item.follow_info.tag_ids:
            found = tag_ids.get(wecom_tag_id)
            if found is None:
                report.unknown_tag_ids += 1  # rule-group or just-created tag: next sync
            else:
                wanted_tags.add(found)
        have = current.get(relation_id, set())
        for tag_id in wanted_tags - have:
            session.add(RelationTag(relation_id=relation_id, tag_id=tag_id, synced_at=now))
        gone = have - wanted_tags
        if gone:
            session.execute(
                delete(RelationTag).where(
                    RelationTag.relation_id == relation_id, RelationTag.tag_id.in_(gone)
                )
            )
        report.relation_tags_added += len(wanted_tags - have)
        report.relation_tags_removed += len(gone)
    session.flush()
    return seen


def _added_again(relation: FollowRelation, createtime: int) -> bool:
    """Return whether WeCom lists a later add than the one whose channel was applied."""
    added = _epoch(createtime)
    return (
        relation.channel_applied_at is not None
        and relation.added_at is not None
        and added is not None
        and added - relation.added_at > READDED
    )


def _changed(customer: Customer, item: ContactFollow) -> bool:
    c = item.contact
    return (customer.unionid, customer.name, customer.type, customer.gender) != (
        c.unionid or None,
        c.name,
        c.type,
        c.gender,
    ) or (customer.avatar, customer.corp_name) != (c.avatar, c.corp_name)


def _active_relations(staff_ids: Sequence[int], *, session: Session) -> set[int]:
    """Return the ids of these staff members' active relations."""
    return set(
        session.scalars(
            select(FollowRelation.id).where(
                FollowRelation.staff_id.in_(staff_ids), FollowRelation.status == "active"
            )
        )
    )


def _mark_lost(unseen: set[int], report: SyncReport, *, session: Session) -> None:
    """Mark relations WeCom no longer lists as lost (unless a callback already did)."""
    lost = sorted(unseen)
    now = utcnow()
    for start in range(0, len(lost), 1000):
        marked = session.execute(
            update(FollowRelation)
            .where(
                FollowRelation.id.in_(lost[start : start + 1000]),
                FollowRelation.status == "active",
            )
            .values(status="lost", lost_at=now, lost_reason=LOST_REASON)
            .execution_options(synchronize_session=False)
        )
        report.relations_lost += marked.rowcount or 0  # type: ignore[attr-defined]

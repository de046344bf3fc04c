"""The scan's store, in plain SQL on the driver: a new customer, their relation and its tags.

Every scan ends in one write: the customer, the relation, its tags, the touched mark,
the channel's scan count and the inbox event's end. Through a session that cost about
half a millisecond of CPU beyond the SQL (flushes, identity map, bind and result
processing); here the same rows are written with the SQL spelled out, through
`Database.write_driver` (bot/db/driver.py), in the order the session path writes them.

Only the common case is done here: a customer never seen before, added to a member we
know, with tags we know, and nothing left for the outbox. Anything else (a customer
already stored, an unknown member or tag to learn, a tag the direct call could not put
on) raises `Unusual` before the transaction commits; it is rolled back and the caller
stores the scan through the session path (bot.customers.contact_events), which knows
every case. The outcome is the same either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.db.driver import DriverWrite
from bot.db.types import sqlite_datetime, utcnow
from bot.wecom.types import FollowUser

FinishSql = Callable[[DriverWrite], None]  # marks the stored event done, in this write


class Unusual(Exception):  # noqa: N818  (a signal to take the session path, not an error)
    """The scan needs the session path: roll back and store it there."""


@dataclass(frozen=True)
class NewContact:
    """What the scan stores, already in the form the session path would store it."""

    external_userid: str
    customer: dict[str, Any]  # the customer's non-None profile fields
    staff_userid: str
    relation: dict[str, Any]  # state, remark, add_way, added_at: non-None values only
    channel_id: int | None  # the scan's channel (None: find it from `state`, as upsert does)
    follow: FollowUser | None
    marked: Sequence[int]  # our ids of the tags put on by the direct call
    channel_tag_ids: Sequence[int] | None  # our ids of the channel's tags (None: no channel)


_CUSTOMER_FIELDS = ("unionid", "name", "type", "gender", "avatar", "corp_name")
_CUSTOMER_DEFAULTS: dict[str, Any] = {
    "unionid": None,
    "name": "",
    "type": 1,
    "gender": 0,
    "avatar": "",
    "corp_name": "",
}
_RELATION_DEFAULTS: dict[str, Any] = {"state": "", "remark": "", "add_way": 0, "added_at": None}

_INSERT_CUSTOMER = """
INSERT INTO customers (external_userid, unionid, name, type, gender, avatar, corp_name,
    created_at, updated_at)
VALUES (:external_userid, :unionid, :name, :type, :gender, :avatar, :corp_name, :now, :now)
ON CONFLICT (external_userid) DO NOTHING
RETURNING id"""


def _orphans(column: str) -> str:
    # Same conditions as bot.customers.contacts.link_orphans.
    by_id = "external_userid = :ext"
    if column == "union":
        return f"customer_id IS NULL AND ({by_id} OR unionid = :union)"
    return f"customer_id IS NULL AND {by_id}"


_ORPHAN_TABLES = ("orders", "interaction_events", "profile_attributes")
# The member's id, the channel a state names, and whether any orphan rows wait for the
# customer, in one SELECT.
_LOOKUP = {
    kind: "SELECT (SELECT id FROM staff WHERE userid = :userid), "
    "(SELECT id FROM channels WHERE state = :state), "
    + ", ".join(f"EXISTS (SELECT 1 FROM {t} WHERE {_orphans(kind)})" for t in _ORPHAN_TABLES)
    + ", EXISTS (SELECT 1 FROM group_members WHERE customer_id IS NULL AND member_userid = :ext)"
    for kind in ("ext", "union")
}
_LINK = {
    kind: [f"UPDATE {t} SET customer_id = :cid WHERE {_orphans(kind)}" for t in _ORPHAN_TABLES]
    for kind in ("ext", "union")
}
_INSERT_RELATION = """
INSERT INTO follow_relations (staff_id, customer_id, channel_id, state, remark, add_way, status,
    added_at, channel_applied_at, created_at, updated_at)
VALUES (:staff_id, :customer_id, :channel_id, :state, :remark, :add_way, 'active',
    :added_at, :now, :now, :now)
RETURNING id"""
_TOUCH = """
INSERT INTO tier_touched (customer_id, touched_at) VALUES (:customer_id, :now)
ON CONFLICT (customer_id) DO UPDATE SET touched_at = excluded.touched_at"""
_COUNT_SCAN = "UPDATE channels SET scans = scans + 1, updated_at = :now WHERE id = :channel_id"


def _tags_sql(n: int) -> str:
    marks = ", ".join(f":t{i}" for i in range(n))
    return f"SELECT id, wecom_tag_id FROM tags WHERE wecom_tag_id IN ({marks})"


def _relation_tags_sql(n: int) -> str:
    rows = ", ".join(f"(:relation_id, :t{i}, :now)" for i in range(n))
    return f"INSERT INTO relation_tags (relation_id, tag_id, synced_at) VALUES {rows}"


def _seen(txn: DriverWrite, follow: FollowUser) -> set[int]:
    """Our ids of the corp tags WeCom shows on the relation (bot.tags.catalogue.record_seen)."""
    corp = [t for t in follow.tags if t.type in (0, 1) and t.tag_id]
    ids = sorted({t.tag_id for t in corp})
    if not ids:
        return set()
    known = {
        str(wid): int(our)
        for our, wid in txn.rows(_tags_sql(len(ids)), {f"t{i}": v for i, v in enumerate(ids)})
    }
    seen = set()
    for t in corp:
        our = known.get(t.tag_id)
        if our is None:
            if t.group_name and t.tag_name:
                raise Unusual("a tag to learn")
            continue
        seen.add(our)
    return seen


def store(contact: NewContact, *, txn: DriverWrite, finish: FinishSql) -> None:
    """Store a new customer's scan and end its event; raise `Unusual` for any other case."""
    sqlite = txn.dialect == "sqlite"
    now = utcnow()
    stored_now: Any = sqlite_datetime(now) if sqlite else now
    values = _CUSTOMER_DEFAULTS | contact.customer
    row = txn.execute(
        _INSERT_CUSTOMER,
        {"external_userid": contact.external_userid, "now": stored_now, **values},
    )
    if row is None:
        raise Unusual("the customer is stored already")
    customer_id = int(row[0])
    kind = "union" if values["unionid"] else "ext"
    relation = _RELATION_DEFAULTS | contact.relation
    params = {
        "userid": contact.staff_userid,
        "state": relation["state"],
        "ext": contact.external_userid,
        "union": values["unionid"],
    }
    found = txn.execute(_LOOKUP[kind], params)
    assert found is not None  # a SELECT without FROM always has its row
    staff_id, state_channel, *orphans, group_stays = found
    if staff_id is None:
        raise Unusual("a member to learn")
    if group_stays:  # joined a group before being anyone's customer: its channel tags wait
        raise Unusual("group stays to link")
    if any(orphans):
        for sql, waiting in zip(_LINK[kind], orphans, strict=True):
            if waiting:
                txn.execute(sql, {**params, "cid": customer_id})
    have: set[int] = set()
    if contact.follow is not None:
        have = _seen(txn, contact.follow)
    if contact.follow is not None or contact.marked:
        have |= set(contact.marked)
    if contact.channel_tag_ids is not None and any(t not in have for t in contact.channel_tag_ids):
        raise Unusual("tags for the outbox")
    channel_id = contact.channel_id
    if channel_id is None and relation["state"]:
        channel_id = state_channel
    added_at: datetime | None = relation["added_at"]
    relation_id = txn.execute(
        _INSERT_RELATION,
        {
            "staff_id": staff_id,
            "customer_id": customer_id,
            "channel_id": channel_id,
            "state": relation["state"],
            "remark": relation["remark"],
            "add_way": relation["add_way"],
            "added_at": sqlite_datetime(added_at) if sqlite else added_at,
            "now": stored_now,
        },
    )
    assert relation_id is not None
    if have:
        tag_params: dict[str, Any] = {f"t{i}": t for i, t in enumerate(sorted(have))}
        txn.execute(
            _relation_tags_sql(len(have)),
            {"relation_id": relation_id[0], "now": stored_now, **tag_params},
        )
    txn.execute(_TOUCH, {"customer_id": customer_id, "now": stored_now})
    if contact.channel_id is not None:
        txn.execute(_COUNT_SCAN, {"channel_id": contact.channel_id, "now": stored_now})
    finish(txn)


def customer_fields(given: dict[str, Any]) -> dict[str, Any]:
    """Keep the profile fields the session path would write (None keeps the default)."""
    return {k: v for k in _CUSTOMER_FIELDS if (v := given.get(k)) is not None}

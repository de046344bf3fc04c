"""The scan's store on the driver (bot/customers/scan_store.py) writes what the session path does.

Each case stores the same add event twice on a fresh database: once through the driver,
once through the session path (bot.customers.contact_events), and compares every row
either wrote. Cases the driver leaves to the session path must leave no trace behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, select

from bot.channels.welcome import ChannelContext
from bot.customers import contact_events
from bot.db import Database
from bot.db.models import (
    Channel,
    Customer,
    FollowRelation,
    InteractionEvent,
    Order,
    ProfileAttribute,
    RelationTag,
    Staff,
    Tag,
    TagGroup,
    TouchedCustomer,
)
from bot.wecom.events import CallbackEvent
from bot.wecom.types import ExternalContact, FollowUser, FollowUserTag

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ADDED = 1767000000


@dataclass(frozen=True)
class World:
    channel_id: int
    tag_ids: dict[str, int]  # our tag id by name


def _world(db: Database, *, orphans: bool = True, customer: bool = False) -> World:
    with db.write() as session:
        session.add(Staff(userid="alice", name="Alice"))
        channel = Channel(name="直播", state="st_live")
        group = TagGroup(name="来源", wecom_group_id="g1")
        session.add_all([channel, group])
        session.flush()
        tags = [
            Tag(group_id=group.id, name=name, wecom_tag_id=wid)
            for name, wid in (("直播", "et_live"), ("压测", "et_load"), ("旧", "et_old"))
        ]
        session.add_all(tags)
        if orphans:
            session.add_all(
                [
                    Order(
                        order_id="o-ext",
                        external_userid="wm_a",
                        amount=Decimal("10"),
                        paid_at=T0,
                        status="paid",
                    ),
                    Order(
                        order_id="o-union",
                        unionid="un_a",
                        amount=Decimal("5"),
                        paid_at=T0,
                        status="paid",
                    ),
                    Order(
                        order_id="o-other",
                        external_userid="wm_b",
                        amount=Decimal("1"),
                        paid_at=T0,
                        status="paid",
                    ),
                    InteractionEvent(event_id="e1", unionid="un_a", kind="visit", occurred_at=T0),
                    ProfileAttribute(subject="wm_a", external_userid="wm_a", name="age", value="3"),
                ]
            )
        if customer:
            session.add(Customer(external_userid="wm_a", name="旧名"))
        session.flush()
        return World(channel.id, {t.name: t.id for t in tags})


def _reset(db: Database) -> None:
    with db.write() as session:
        for model in (
            RelationTag,
            FollowRelation,
            TouchedCustomer,
            Order,
            InteractionEvent,
            ProfileAttribute,
            Customer,
            Tag,
            TagGroup,
            Channel,
            Staff,
        ):
            session.execute(delete(model))


def _snapshot(db: Database) -> dict[str, Any]:
    """Every row the scan may write, without ids and write times."""
    with db.read() as session:
        customers = session.execute(
            select(
                Customer.external_userid,
                Customer.unionid,
                Customer.name,
                Customer.type,
                Customer.gender,
                Customer.avatar,
                Customer.corp_name,
            ).order_by(Customer.external_userid)
        ).all()
        relations = session.execute(
            select(
                Staff.userid,
                Customer.external_userid,
                Channel.name,
                FollowRelation.state,
                FollowRelation.remark,
                FollowRelation.add_way,
                FollowRelation.status,
                FollowRelation.added_at,
                FollowRelation.channel_applied_at.is_not(None),
                FollowRelation.lost_at,
            )
            .select_from(FollowRelation)
            .join(Staff, Staff.id == FollowRelation.staff_id)
            .join(Customer, Customer.id == FollowRelation.customer_id)
            .outerjoin(Channel, Channel.id == FollowRelation.channel_id)
            .order_by(Customer.external_userid)
        ).all()
        tags = session.execute(
            select(Customer.external_userid, Tag.name)
            .select_from(RelationTag)
            .join(FollowRelation, FollowRelation.id == RelationTag.relation_id)
            .join(Customer, Customer.id == FollowRelation.customer_id)
            .join(Tag, Tag.id == RelationTag.tag_id)
            .order_by(Customer.external_userid, Tag.name)
        ).all()
        linked = [
            session.execute(
                select(model.external_userid, model.unionid, Customer.external_userid)
                .select_from(model)
                .outerjoin(Customer, Customer.id == model.customer_id)
                .order_by(model.id)
            ).all()
            for model in (Order, InteractionEvent, ProfileAttribute)
        ]
        touched = session.scalars(
            select(Customer.external_userid).join(
                TouchedCustomer, TouchedCustomer.customer_id == Customer.id
            )
        ).all()
        scans = session.execute(select(Channel.name, Channel.scans)).all()
        staff = session.scalars(select(Staff.userid).order_by(Staff.userid)).all()
    return {
        "customers": customers,
        "relations": relations,
        "tags": tags,
        "linked": linked,
        "touched": touched,
        "scans": scans,
        "staff": staff,
    }


def _event(state: str = "st_live", userid: str = "alice") -> CallbackEvent:
    return CallbackEvent(
        event="change_external_contact",
        change_type="add_external_contact",
        create_time=ADDED + 5,
        userid=userid,
        external_userid="wm_a",
        state=state,
    )


def _contact(*tags: FollowUserTag, unionid: str = "un_a", userid: str = "alice") -> ExternalContact:
    follow = FollowUser(
        userid=userid, remark="王女士", createtime=ADDED, add_way=1, state="st_live", tags=tags
    )
    return ExternalContact(
        external_userid="wm_a",
        name="王芳",
        gender=2,
        unionid=unionid,
        avatar="https://example.invalid/a.png",
        follow_users=(follow,),
    )


def _context(world: World, names: Sequence[str]) -> ChannelContext:
    return ChannelContext(
        id=world.channel_id,
        name="直播",
        welcome_text="",
        attachments=(),
        tags=(),
        tag_ids=tuple((world.tag_ids[n], f"et_{n}") for n in names),
        daily_cap=None,
    )


Store = tuple[CallbackEvent, ExternalContact, bool, Sequence[str], Sequence[str]]


def _both(db: Database, case: Store, **world: bool) -> tuple[bool, dict[str, Any], dict[str, Any]]:
    """Store the case through the driver, then afresh through the session path."""
    ev, contact, with_channel, channel_tags, marked = case
    finished: list[str] = []

    def run(fast: bool) -> tuple[bool, dict[str, Any]]:
        _reset(db)
        w = _world(db, **world)
        ctx = _context(w, channel_tags) if with_channel else None
        tag_ids = [w.tag_ids[n] for n in channel_tags] if with_channel else []
        ours = [w.tag_ids[n] for n in marked]
        if fast:
            before = _snapshot(db)
            done = contact_events._store_new(
                ev, contact, ctx, tag_ids, ours, db=db, finish_sql=lambda _t: finished.append("d")
            )
            if not done:  # left to the session path: nothing written
                assert _snapshot(db) == before
            return done, _snapshot(db)
        contact_events._store_any(
            ev, contact, ctx, tag_ids, ours, db=db, finish=lambda _s: finished.append("s")
        )
        return True, _snapshot(db)

    done, fast = run(fast=True)
    _, slow = run(fast=False)
    assert finished == (["d", "s"] if done else ["s"])
    return done, fast, slow


_LIVE = FollowUserTag(group_name="来源", tag_name="直播", tag_id="et_live", type=1)
_PERSONAL = FollowUserTag(group_name="", tag_name="我的", tag_id="", type=2)


def test_a_new_customer_with_orphans_and_tags_is_stored_as_the_session_path_does(
    db: Database,
) -> None:
    # WeCom shows one channel tag already; the direct call put on the other.
    case = (_event(), _contact(_LIVE, _PERSONAL), True, ["直播", "压测"], ["压测"])
    done, fast, slow = _both(db, case)
    assert done
    assert fast == slow
    assert fast["tags"] == [("wm_a", "压测"), ("wm_a", "直播")]
    assert fast["relations"] == [
        ("alice", "wm_a", "直播", "st_live", "王女士", 1, "active", _at(ADDED), True, None)
    ]
    # By external_userid and by unionid; wm_b's order stays an orphan.
    assert fast["linked"][0] == [
        ("wm_a", None, "wm_a"),
        (None, "un_a", "wm_a"),
        ("wm_b", None, None),
    ]
    assert fast["touched"] == ["wm_a"]
    assert fast["scans"] == [("直播", 1)]


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def test_without_a_channel_context_the_state_finds_the_channel_and_counts_no_scan(
    db: Database,
) -> None:
    case = (_event(), _contact(unionid=""), False, [], [])
    done, fast, slow = _both(db, case)
    assert done
    assert fast == slow
    assert fast["relations"][0][2] == "直播"
    assert fast["scans"] == [("直播", 0)]
    # No unionid: only the rows under the external_userid are linked.
    assert fast["linked"][0][0] == ("wm_a", None, "wm_a")
    assert fast["linked"][0][1] == (None, "un_a", None)


@pytest.mark.parametrize(
    ("why", "case", "world"),
    [
        ("a stored customer", (_event(), _contact(), True, [], []), {"customer": True}),
        (
            "an unknown member",
            (_event(userid="bob"), _contact(userid="bob"), True, [], []),
            {},
        ),
        (
            "a tag to learn",
            (
                _event(),
                _contact(FollowUserTag(group_name="来源", tag_name="新", tag_id="et_new", type=1)),
                False,
                [],
                [],
            ),
            {},
        ),
        ("a tag for the outbox", (_event(), _contact(), True, ["直播", "压测"], ["压测"]), {}),
    ],
)
def test_other_cases_are_left_to_the_session_path_untouched(
    db: Database, why: str, case: Store, world: dict[str, bool]
) -> None:
    done, _, slow = _both(db, case, **world)
    assert not done, why
    assert slow["relations"][0][:2] in {("alice", "wm_a"), ("bob", "wm_a")}

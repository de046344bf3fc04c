"""Customers and relations: upserts, and orphan rows linked when the customer appears."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select

from bot.customers import contacts
from bot.customers.card import customer_card
from bot.db import Database
from bot.db.models import (
    Channel,
    Customer,
    FollowRelation,
    InteractionEvent,
    Order,
    ProfileAttribute,
    Staff,
    Tag,
    TagGroup,
)
from bot.tags import catalogue
from bot.wecom.types import FollowUserTag

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _orphans(db: Database) -> None:
    with db.write() as session:
        session.add_all(
            [
                Order(
                    order_id="o-ext",
                    external_userid="wm_a",
                    amount=Decimal("10.50"),
                    paid_at=T0,
                    status="paid",
                ),
                Order(
                    order_id="o-union",
                    unionid="un_a",
                    amount=Decimal("5"),
                    paid_at=T0,
                    status="refunded",
                ),
                Order(
                    order_id="o-other",
                    external_userid="wm_b",
                    amount=Decimal("1"),
                    paid_at=T0,
                    status="paid",
                ),
                InteractionEvent(event_id="e1", unionid="un_a", kind="visit", occurred_at=T0),
                ProfileAttribute(
                    subject="unionid:un_a", unionid="un_a", name="region", value="华东"
                ),
                ProfileAttribute(subject="wm_a", external_userid="wm_a", name="age", value="31"),
            ]
        )


def test_orphans_are_linked_when_the_customer_appears(db: Database) -> None:
    _orphans(db)
    with db.write() as session:
        customer = contacts.upsert_customer(
            session=session, external_userid="wm_a", unionid="un_a", name="张三"
        )
        cid = customer.id
    with db.read() as session:
        linked = dict(session.execute(select(Order.order_id, Order.customer_id)).all())
        assert linked == {"o-ext": cid, "o-union": cid, "o-other": None}
        assert session.scalar(select(InteractionEvent.customer_id)) == cid
        assert set(session.scalars(select(ProfileAttribute.customer_id))) == {cid}
        card = customer_card("wm_a", session=session, display_names={})
    assert card.name == "张三"
    assert card.orders.paid_count == 1
    assert card.orders.paid_amount == Decimal("10.50")
    assert card.orders.refunded_amount == Decimal("5.00")
    assert card.interactions == 1
    assert card.attributes == {"age": "31", "region": "华东"}


def test_unionid_learnt_later_links_rows_kept_under_it(db: Database) -> None:
    _orphans(db)
    with db.write() as session:
        contacts.upsert_customer(session=session, external_userid="wm_a")
    with db.read() as session:
        assert session.scalar(select(Order.customer_id).where(Order.order_id == "o-union")) is None
    with db.write() as session:
        # None keeps what is stored: a callback that knows only the id erases nothing.
        customer = contacts.upsert_customer(session=session, external_userid="wm_a", unionid="un_a")
        assert customer.name == ""
        cid = customer.id
    with db.read() as session:
        assert session.scalar(select(Order.customer_id).where(Order.order_id == "o-union")) == cid


def test_link_all_orphans_is_one_sweep(db: Database) -> None:
    _orphans(db)
    with db.write() as session:
        session.add_all(
            [Customer(external_userid="wm_a", unionid="un_a"), Customer(external_userid="wm_b")]
        )
    with db.write() as session:
        assert contacts.link_all_orphans(session=session) == 6
    with db.write() as session:
        assert contacts.link_all_orphans(session=session) == 0
        assert session.scalar(select(Order.id).where(Order.customer_id.is_(None))) is None


def test_upsert_relation_is_idempotent_and_finds_the_channel(db: Database) -> None:
    with db.write() as session:
        session.add(Channel(name="公众号文章", state="ch_article"))
    for _ in range(2):
        with db.write() as session:
            customer = contacts.upsert_customer(session=session, external_userid="wm_a")
            rel = contacts.upsert_relation(
                session=session,
                staff_userid="zhangsan",
                customer=customer,
                state="ch_article",
                add_way=1,
                added_at=T0,
            )
            assert rel.channel is not None
            assert rel.channel.name == "公众号文章"
    with db.write() as session:
        lost = contacts.mark_relation_lost(
            session=session,
            staff_userid="zhangsan",
            external_userid="wm_a",
            reason="del_follow_user",
        )
        assert lost is not None
    with db.read() as session:
        assert session.scalar(select(Staff.userid)) == "zhangsan"
        rel = session.scalars(select(FollowRelation)).one()
        assert (rel.status, rel.lost_reason, rel.added_at) == ("lost", "del_follow_user", T0)
    with db.write() as session:
        customer = contacts.upsert_customer(session=session, external_userid="wm_a")
        rel = contacts.upsert_relation(session=session, staff_userid="zhangsan", customer=customer)
        assert (rel.status, rel.lost_at) == ("active", None)


def test_a_new_customer_is_returned_as_stored_and_stays_tracked(db: Database) -> None:
    with db.write() as session:
        customer = contacts.upsert_customer(session=session, external_userid="wm_a", gender=2)
        assert (customer.name, customer.type, customer.gender, customer.unionid) == ("", 1, 2, None)
        assert customer.created_at.tzinfo is not None
        assert contacts.get_customer("wm_a", session=session) is customer
        customer.corp_name = "某公司"  # a change to the returned object is written at commit
    with db.write() as session:
        # None keeps what is stored; given values replace it.
        customer = contacts.upsert_customer(
            session=session, external_userid="wm_a", name="张三", gender=None
        )
    with db.read() as session:
        stored = session.scalars(select(Customer)).one()
        assert (stored.name, stored.gender, stored.corp_name) == ("张三", 2, "某公司")


def test_orphans_of_a_customer_without_unionid_link_by_external_userid_only(db: Database) -> None:
    _orphans(db)
    with db.write() as session:
        customer = contacts.upsert_customer(session=session, external_userid="wm_a")
        cid = customer.id
        assert contacts.link_orphans(customer, session=session) == 0  # all taken already
    with db.read() as session:
        linked = dict(session.execute(select(Order.order_id, Order.customer_id)).all())
        assert linked == {"o-ext": cid, "o-union": None, "o-other": None}
        assert session.scalar(select(InteractionEvent.customer_id)) is None
        attrs = dict(
            session.execute(select(ProfileAttribute.name, ProfileAttribute.customer_id)).all()
        )
        assert attrs == {"age": cid, "region": None}
    with db.write() as session:
        customer = contacts.upsert_customer(session=session, external_userid="wm_a", unionid="un_a")
    with db.read() as session:
        assert session.scalar(select(InteractionEvent.customer_id)) == cid
        assert set(session.scalars(select(ProfileAttribute.customer_id))) == {cid}


def test_a_known_customer_without_a_new_unionid_links_nothing_new(db: Database) -> None:
    with db.write() as session:
        contacts.upsert_customer(session=session, external_userid="wm_a", unionid="un_a")
    _orphans(db)  # arrive after the customer: the ingest links these itself, not a re-read
    with db.write() as session:
        contacts.upsert_customer(session=session, external_userid="wm_a", unionid="un_a")
    with db.read() as session:
        assert session.scalar(select(Order.id).where(Order.customer_id.is_not(None))) is None


def test_a_new_relation_is_stored_whole_and_reactivated_when_lost(db: Database) -> None:
    with db.write() as session:
        session.add(Channel(name="公众号文章", state="ch_article"))
    with db.write() as session:
        customer = contacts.upsert_customer(session=session, external_userid="wm_a")
        rel = contacts.upsert_relation(
            session=session,
            staff_userid="lisi",  # unknown yet: created on the way
            customer=customer,
            state="ch_article",
            remark="老客户",
            add_way=3,
            added_at=T0,
        )
        assert rel.customer is customer
        assert rel.channel is not None
        assert rel.channel.name == "公众号文章"
        rel_id = rel.id
    with db.read() as session:
        rel = session.scalars(select(FollowRelation)).one()
        assert rel.id == rel_id
        assert rel.staff.userid == "lisi"
        assert (rel.state, rel.remark, rel.add_way, rel.status, rel.added_at) == (
            "ch_article",
            "老客户",
            3,
            "active",
            T0,
        )
    with db.write() as session:
        contacts.mark_relation_lost(
            session=session, staff_userid="lisi", external_userid="wm_a", reason="del_follow_user"
        )
    with db.write() as session:
        customer = contacts.upsert_customer(session=session, external_userid="wm_a")
        # A state we don't own keeps the channel; the other fields keep their values.
        rel = contacts.upsert_relation(
            session=session, staff_userid="lisi", customer=customer, state="somewhere_else"
        )
        assert rel.id == rel_id
    with db.read() as session:
        rel = session.scalars(select(FollowRelation)).one()
        assert (rel.status, rel.lost_at, rel.lost_reason) == ("active", None, None)
        assert (rel.state, rel.remark, rel.add_way, rel.added_at) == (
            "somewhere_else",
            "老客户",
            3,
            T0,
        )
        assert rel.channel_id is not None
    with db.write() as session:
        customer = contacts.upsert_customer(session=session, external_userid="wm_a")
        contacts.upsert_relation(
            session=session, staff_userid="lisi", customer=customer, channel_id=None
        )
    with db.read() as session:
        assert session.scalar(select(FollowRelation.channel_id)) is None


def test_record_seen_reads_corp_tags_and_learns_unknown_ones(db: Database) -> None:
    with db.write() as session:
        group = TagGroup(name="渠道", wecom_group_id="wg1")
        session.add(group)
        session.flush()
        session.add(Tag(group_id=group.id, name="文章", wecom_tag_id="wt1"))
    seen = [
        FollowUserTag(group_name="渠道", tag_name="文章", tag_id="wt1", type=1),
        FollowUserTag(
            group_name="", tag_name="我的标签", tag_id="wt_personal", type=2
        ),  # personal: not in the catalogue
        FollowUserTag(
            group_name="兴趣", tag_name="理财", tag_id="wt2", type=1
        ),  # unknown: learnt, with its group
        FollowUserTag(
            group_name="", tag_name="", tag_id="wt3", type=1
        ),  # unknown and nameless: skipped
        FollowUserTag(group_name="渠道", tag_name="文章", tag_id="wt1", type=1),
    ]
    with db.write() as session:
        rows = catalogue.record_seen(session, seen)
        assert [(t.group.name, t.name, t.wecom_tag_id) for t in rows] == [
            ("渠道", "文章", "wt1"),
            ("兴趣", "理财", "wt2"),
            ("渠道", "文章", "wt1"),
        ]
    with db.write() as session:
        # The console re-created 渠道/文章 as wt9: the row moves to wt9, and the stale wt1
        # seen again afterwards is learnt anew, taking the row back.
        moved = catalogue.record_seen(
            session,
            [
                FollowUserTag(group_name="渠道", tag_name="文章", tag_id="wt1", type=1),
                FollowUserTag(group_name="渠道", tag_name="文章", tag_id="wt9", type=1),
                FollowUserTag(group_name="渠道", tag_name="文章", tag_id="wt1", type=1),
            ],
        )
        assert len({t.id for t in moved}) == 1
    with db.read() as session:
        ids = dict(session.execute(select(Tag.name, Tag.wecom_tag_id)).all())
        assert ids == {"文章": "wt1", "理财": "wt2"}

"""Customers and relations: upserts, and orphan rows linked when the customer appears."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select

from bot import contacts
from bot.db import Database
from bot.db.models import (
    Channel,
    Customer,
    FollowRelation,
    InteractionEvent,
    Order,
    ProfileAttribute,
    Staff,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _orphans(db: Database) -> None:
    with db.begin() as session:
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
    with db.begin() as session:
        customer = contacts.upsert_customer(
            session=session, external_userid="wm_a", unionid="un_a", name="张三"
        )
        cid = customer.id
    with db.read() as session:
        linked = dict(session.execute(select(Order.order_id, Order.customer_id)).all())
        assert linked == {"o-ext": cid, "o-union": cid, "o-other": None}
        assert session.scalar(select(InteractionEvent.customer_id)) == cid
        assert set(session.scalars(select(ProfileAttribute.customer_id))) == {cid}
        card = contacts.customer_card("wm_a", session=session)
    assert card.name == "张三"
    assert card.orders.paid_count == 1
    assert card.orders.paid_amount == Decimal("10.50")
    assert card.orders.refunded_amount == Decimal("5.00")
    assert card.interactions == 1
    assert card.attributes == {"age": "31", "region": "华东"}


def test_unionid_learnt_later_links_rows_kept_under_it(db: Database) -> None:
    _orphans(db)
    with db.begin() as session:
        contacts.upsert_customer(session=session, external_userid="wm_a")
    with db.read() as session:
        assert session.scalar(select(Order.customer_id).where(Order.order_id == "o-union")) is None
    with db.begin() as session:
        # None keeps what is stored: a callback that knows only the id erases nothing.
        customer = contacts.upsert_customer(session=session, external_userid="wm_a", unionid="un_a")
        assert customer.name == ""
        cid = customer.id
    with db.read() as session:
        assert session.scalar(select(Order.customer_id).where(Order.order_id == "o-union")) == cid


def test_link_all_orphans_is_one_sweep(db: Database) -> None:
    _orphans(db)
    with db.begin() as session:
        session.add_all(
            [Customer(external_userid="wm_a", unionid="un_a"), Customer(external_userid="wm_b")]
        )
    with db.begin() as session:
        assert contacts.link_all_orphans(session=session) == 6
    with db.begin() as session:
        assert contacts.link_all_orphans(session=session) == 0
        assert session.scalar(select(Order.id).where(Order.customer_id.is_(None))) is None


def test_upsert_relation_is_idempotent_and_finds_the_channel(db: Database) -> None:
    with db.begin() as session:
        session.add(Channel(name="公众号文章", state="ch_article"))
    for _ in range(2):
        with db.begin() as session:
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
    with db.begin() as session:
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
    with db.begin() as session:
        customer = contacts.upsert_customer(session=session, external_userid="wm_a")
        rel = contacts.upsert_relation(session=session, staff_userid="zhangsan", customer=customer)
        assert (rel.status, rel.lost_at) == ("active", None)

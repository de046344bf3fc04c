"""The customer-group tables on SQLite and PostgreSQL: stays in a group, their uniqueness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.db import Database
from bot.db.models import Customer, GroupChat, GroupMember

JOINED = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def test_a_member_who_leaves_and_returns_has_two_stays_and_a_stay_is_stored_once(
    db: Database,
) -> None:
    with db.write() as session:
        customer = Customer(external_userid="wm_friend", name="王小明")
        chat = GroupChat(chat_id="wr_vip", name="VIP会员群", owner_userid="u1")
        session.add_all([customer, chat])
        session.flush()
        chat.members = [
            GroupMember(member_userid="u1", member_type=1, joined_at=JOINED, join_scene=1),
            GroupMember(
                member_userid="wm_friend",
                member_type=2,
                customer_id=customer.id,
                joined_at=JOINED,
                join_scene=3,
                state="vip_qr",
                left_at=JOINED + timedelta(days=1),
                quit_scene=0,
            ),
            GroupMember(
                member_userid="wm_friend",
                member_type=2,
                customer_id=customer.id,
                joined_at=JOINED + timedelta(days=2),
                join_scene=1,
                invitor_userid="u1",
            ),
        ]
    with db.read() as session:
        current = session.scalars(
            select(GroupMember.member_userid)
            .join(GroupChat)
            .where(GroupChat.chat_id == "wr_vip", GroupMember.left_at.is_(None))
            .order_by(GroupMember.id)
        ).all()
        assert current == ["u1", "wm_friend"]
        first = session.scalars(select(GroupMember).where(GroupMember.state == "vip_qr")).one()
        assert (first.joined_at, first.quit_scene) == (JOINED, 0)
    with pytest.raises(IntegrityError), db.write() as session:
        chat_id = session.scalars(select(GroupChat.id)).one()
        session.add(
            GroupMember(group_chat_id=chat_id, member_userid="u1", member_type=1, joined_at=JOINED)
        )
        session.flush()
    with db.write() as session:
        session.delete(session.scalars(select(Customer)).one())
    with db.read() as session:  # the stays outlive the customer row, unlinked
        assert session.scalars(select(GroupMember.customer_id)).all() == [None, None, None]

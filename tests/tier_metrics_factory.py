"""Hand-built customers for the metrics engine's tests, written through the real models."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from itertools import count
from zoneinfo import ZoneInfo

from sqlalchemy import insert
from sqlalchemy.orm import Session

from bot.db.models import (
    Channel,
    Customer,
    FollowRelation,
    InteractionEvent,
    Order,
    ProfileAttribute,
    Staff,
)

TZ = "Asia/Shanghai"
ZONE = ZoneInfo(TZ)
# 12:00 on 2026-06-15 in Shanghai; its local day is D.
AS_OF = datetime(2026, 6, 15, 4, 0, tzinfo=UTC)
D = date(2026, 6, 15)

_seq = count(1)


def local(days_ago: int, hh: int = 12, mm: int = 0) -> datetime:
    """Return the aware instant at hh:mm local time, `days_ago` local days before D."""
    return datetime.combine(D - timedelta(days=days_ago), time(hh, mm), ZONE).astimezone(UTC)


def customer(session: Session, ext: str, *, gender: int = 0) -> Customer:
    """Add a customer."""
    c = Customer(external_userid=ext, gender=gender)
    session.add(c)
    session.flush()
    return c


def order(
    session: Session,
    c: Customer,
    yuan: str | int,
    at: datetime,
    *,
    status: str = "paid",
    category: str = "",
    new: bool = False,
) -> None:
    """Add an order of `c`."""
    session.add(
        Order(
            order_id=f"o{next(_seq)}",
            customer_id=c.id,
            external_userid=c.external_userid,
            amount=Decimal(str(yuan)),
            paid_at=at,
            status=status,
            category=category,
            is_new_product=new,
        )
    )


def event(session: Session, c: Customer, kind: str, at: datetime) -> None:
    """Add an interaction event of `c`."""
    session.add(
        InteractionEvent(
            event_id=f"e{next(_seq)}",
            customer_id=c.id,
            external_userid=c.external_userid,
            kind=kind,
            occurred_at=at,
        )
    )


def staff(session: Session, userid: str) -> Staff:
    """Add a staff member."""
    s = Staff(userid=userid)
    session.add(s)
    session.flush()
    return s


def channel(session: Session, name: str) -> Channel:
    """Add a live code."""
    ch = Channel(name=name, state=f"s{next(_seq)}")
    session.add(ch)
    session.flush()
    return ch


def relation(
    session: Session,
    c: Customer,
    s: Staff,
    *,
    added: datetime | None,
    ch: Channel | None = None,
    status: str = "active",
) -> None:
    """Add a follow relation (only the columns named here: it works on older schemas too)."""
    session.execute(
        insert(FollowRelation).values(
            staff_id=s.id,
            customer_id=c.id,
            channel_id=ch.id if ch else None,
            added_at=added,
            status=status,
        )
    )


def profile(
    session: Session,
    c: Customer,
    name: str,
    value: str,
    *,
    subject: str | None = None,
    updated: datetime | None = None,
) -> None:
    """Add a profile attribute of `c`."""
    session.add(
        ProfileAttribute(
            subject=subject or c.external_userid,
            customer_id=c.id,
            external_userid=c.external_userid,
            name=name,
            value=value,
            updated_at=updated or AS_OF,
        )
    )

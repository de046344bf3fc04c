"""The schema migrates on both backends and stores values faithfully."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from bot.db import Database
from bot.db.migrate import current_revision, upgrade_to_head
from bot.db.models import Customer, Order


def test_init_db_is_idempotent(db: Database) -> None:
    before = current_revision(db.engine)
    upgrade_to_head(db.engine)
    assert current_revision(db.engine) == before is not None


def test_money_is_exact_and_times_are_utc(db: Database) -> None:
    shanghai = timezone(timedelta(hours=8))
    with db.write() as session:
        session.add_all(
            Order(
                order_id=f"o{i}",
                amount=Decimal("0.10"),
                paid_at=datetime(2026, 1, 1, 8, tzinfo=shanghai),
                status="paid",
            )
            for i in range(10)
        )
    with db.read() as session:
        total = session.scalar(select(func.sum(Order.__table__.c.amount)))
        order = session.scalars(select(Order).where(Order.order_id == "o1")).one()
    assert total == Decimal("1.00")  # summed exactly in SQL as fen
    assert order.amount == Decimal("0.10")
    assert order.paid_at == datetime(2026, 1, 1, 0, tzinfo=UTC)
    assert order.paid_at.tzinfo is not None


def test_naive_datetime_is_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"), db.write() as session:
        session.add(
            Order(order_id="n", amount=Decimal(1), paid_at=datetime(2026, 1, 1), status="paid")
        )
        session.flush()


def test_unique_external_userid(db: Database) -> None:
    with pytest.raises(IntegrityError), db.write() as session:
        session.add(Customer(external_userid="wm1"))
        session.add(Customer(external_userid="wm1"))
        session.flush()
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Customer)) == 0

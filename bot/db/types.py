"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Integer
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


# Seconds the database's clock runs ahead of this process's (bot/db/clock.py measures it on
# PostgreSQL; SQLite is one machine, its clock the clock). Leases, claim deadlines and the
# WeCom budget windows compare times written by many processes: all read this one clock.
_db_offset = 0.0


def utcnow() -> datetime:
    """Return the current time, by the database's clock, as an aware UTC datetime."""
    return datetime.fromtimestamp(time.time() + _db_offset, UTC)


def wall() -> float:
    """Return the current time, by the database's clock, as seconds since the epoch."""
    return time.time() + _db_offset


def set_db_offset(seconds: float) -> None:
    """Set how far the database's clock runs ahead of this process's (bot/db/clock.py)."""
    global _db_offset
    _db_offset = seconds


def sqlite_datetime(value: datetime | None) -> str | None:
    """Return a time as SQLAlchemy stores a UTCDateTime on SQLite (for SQL run bare)."""
    # The same text as the column's own binds, so stored values compare equal.
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


class UTCDateTime(TypeDecorator[datetime]):
    """Store aware datetimes as UTC; read them back aware, on every backend.

    SQLite keeps no zone, so a naive value would silently mean "whatever the writer meant";
    we refuse naive input instead of guessing.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Money(TypeDecorator[Decimal]):
    """Yuan amounts as exact Decimals, stored as integer fen (分).

    Integer storage keeps sums exact on SQLite, which has no decimal type, and makes
    set-based aggregation cheap on both backends.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
        return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))

    def process_result_value(self, value: int | None, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return (Decimal(value) / 100).quantize(Decimal("0.01"))

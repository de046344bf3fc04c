"""Named leases: one holder at a time, even when threads race for a free or expired one."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from bot import leases
from bot.db import Database
from bot.db.models import Lease
from bot.db.types import utcnow

RACERS = 8


def _race(db: Database, name: str) -> list[str]:
    """Let RACERS threads try to take `name` at once; return the owners that got it."""
    barrier = threading.Barrier(RACERS)
    winners: list[str] = []
    errors: list[BaseException] = []

    def racer(owner: str) -> None:
        try:
            barrier.wait()
            with db.write() as session:
                if leases.try_acquire(session, name, owner, 60):
                    winners.append(owner)
        except BaseException as exc:  # surfaced below: a racer must not fail
            errors.append(exc)

    threads = [threading.Thread(target=racer, args=(f"p{i}",)) for i in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return winners


def _holder(db: Database, name: str) -> str | None:
    with db.read() as session:
        return session.scalars(select(Lease.owner).where(Lease.name == name)).one_or_none()


def test_one_of_many_racers_takes_a_free_lease(db: Database) -> None:
    winners = _race(db, "free")
    assert len(winners) == 1
    assert _holder(db, "free") == winners[0]


def test_one_of_many_racers_takes_over_an_expired_lease(db: Database) -> None:
    with db.write() as session:
        assert leases.try_acquire(session, "expired", "gone", 60)
        session.execute(update(Lease).values(expires_at=utcnow() - timedelta(seconds=1)))
    winners = _race(db, "expired")
    assert len(winners) == 1
    assert _holder(db, "expired") == winners[0]


def test_a_held_lease_is_renewed_by_its_owner_only_and_released(db: Database) -> None:
    with db.write() as session:
        assert leases.try_acquire(session, "held", "a", 60)
    with db.write() as session:
        assert not leases.try_acquire(session, "held", "b", 60)
        assert leases.try_acquire(session, "held", "a", 60)
    with db.write() as session:
        leases.release(session, "held", "b")  # not b's: nothing happens
    assert _holder(db, "held") == "a"
    with db.write() as session:
        leases.release(session, "held", "a")
    assert _holder(db, "held") is None
    with db.write() as session:
        assert leases.try_acquire(session, "held", "b", 60)


def test_holding_gives_the_lease_up_after_the_block_and_only_when_it_was_taken(
    db: Database,
) -> None:
    def owners() -> list[str]:
        with db.read() as session:
            return list(session.scalars(select(Lease.owner).where(Lease.name == "job")))

    with leases.holding(db, "job", "a", 60) as held:
        assert held
        with leases.holding(db, "job", "b", 60) as other:
            assert not other
        assert owners() == ["a"]  # b leaving did not free a's lease
    assert owners() == []
    with pytest.raises(ValueError, match="boom"), leases.holding(db, "job", "c", 60):
        raise ValueError("boom")
    assert owners() == []

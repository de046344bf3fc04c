"""Named leases: one holder at a time, even when threads race; renewals; the one scheduler."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from bot import leases
from bot.config import Settings
from bot.db import Database
from bot.db.models import Lease
from bot.db.types import utcnow
from bot.runtime import Runtime
from jobs.background import Background
from jobs.leadership import LEASE_RENEW, LEASE_TTL
from jobs.specs import ScheduledSpec
from tests.support.clock import UtcClock

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
                if leases.try_acquire(name, owner, 60, session=session):
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
        assert leases.try_acquire("expired", "gone", 60, session=session)
        session.execute(update(Lease).values(expires_at=utcnow() - timedelta(seconds=1)))
    winners = _race(db, "expired")
    assert len(winners) == 1
    assert _holder(db, "expired") == winners[0]


def test_a_held_lease_is_renewed_by_its_owner_only_and_released(db: Database) -> None:
    with db.write() as session:
        assert leases.try_acquire("held", "a", 60, session=session)
    with db.write() as session:
        assert not leases.try_acquire("held", "b", 60, session=session)
        assert leases.try_acquire("held", "a", 60, session=session)
    with db.write() as session:
        leases.release("held", "b", session=session)  # not b's: nothing happens
    assert _holder(db, "held") == "a"
    with db.write() as session:
        leases.release("held", "a", session=session)
    assert _holder(db, "held") is None
    with db.write() as session:
        assert leases.try_acquire("held", "b", 60, session=session)


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


def test_renew_extends_only_the_owners_lease_and_never_takes_one(db: Database) -> None:
    t = UtcClock()
    with db.write() as session:
        assert leases.try_acquire("job", "a", 60, session=session, now=t())
    t.advance(61)  # a lapsed, and no one took it: a may go on
    with db.write() as session:
        assert leases.renew("job", "a", 60, session=session, now=t())
        assert not leases.renew("job", "b", 60, session=session, now=t())
    t.advance(61)
    with db.write() as session:
        assert leases.try_acquire("job", "b", 60, session=session, now=t())  # b took the lapsed one
        assert not leases.renew("job", "a", 60, session=session, now=t())
        leases.release("job", "b", session=session)
        # Given up by b: a renewal does not take it afresh (try_acquire would).
        assert not leases.renew("job", "a", 60, session=session, now=t())
    assert _holder(db, "job") is None


def test_holding_renews_and_reports_a_takeover(db: Database) -> None:
    t = UtcClock()
    with leases.holding(db, "sync", "a", 60, clock=t) as held:
        assert held
        t.advance(50)
        held.renew()  # 50 s in: good for another 60
        t.advance(50)
        with db.write() as session:
            assert not leases.try_acquire("sync", "b", 60, session=session, now=t())
        t.advance(61)
        with db.write() as session:
            assert leases.try_acquire("sync", "b", 60, session=session, now=t())
        with pytest.raises(leases.LeaseLostError):
            held.renew()
        assert not held
    assert _holder(db, "sync") == "b"  # a leaving did not free b's lease


def test_two_schedulers_run_each_job_once_and_the_other_takes_over_once(
    settings: Settings,
) -> None:
    t = UtcClock()
    rts = [Runtime(settings), Runtime(settings)]
    a, b = (Background(rt, owner=name, clock=t) for rt, name in zip(rts, "ab", strict=True))
    ran: list[str] = []
    spec = ScheduledSpec(
        id="count",
        run=lambda rt: ran.append("a" if rt is rts[0] else "b"),
        cron=lambda _s: "* * * * *",
    )

    def fire() -> None:  # the cron fires in both processes
        for bg in (a, b):
            bg.run_if_leader(spec)

    try:
        assert a.leader.renew()
        assert not b.leader.renew()
        fire()
        t.advance(LEASE_RENEW)
        assert a.leader.renew()
        assert not b.leader.renew()
        fire()
        assert ran == ["a", "a"]
        # a stalls past its lease (a long pause): it must not trust the lease it had.
        t.advance(LEASE_TTL + 1)
        fire()
        assert ran == ["a", "a"]
        assert b.leader.renew()  # b takes over at its next renewal
        fire()
        assert not a.leader.renew()  # a wakes up and learns it lost the lease
        fire()
        assert ran == ["a", "a", "b", "b"]
        b.leader.release()  # b stops: a takes over at its next renewal
        fire()
        assert a.leader.renew()
        fire()
        assert ran == ["a", "a", "b", "b", "a"]
    finally:
        for rt in rts:
            rt.close()

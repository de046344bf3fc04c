"""A lease whose holder died on this machine is free at once; a re-tier keeps its lease alive.

A holder that died without letting go (kill -9, or a full disk that kept its release from
being written) used to keep the re-tier lease for an hour; the operator's next `tagbot
retier` waited, then said another re-tier was running.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest
from sqlalchemy import select, update

from bot import leases, retier
from bot.db import Database
from bot.db.models import Lease
from tests.support.waiting import wait_for


def _dead_owner() -> str:
    """The owner name of a process of this machine that has exited."""
    done = subprocess.run(
        [sys.executable, "-c", "from bot import leases; print(leases.new_owner())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _holder(db: Database, name: str) -> str | None:
    with db.read() as s:
        return s.scalar(select(Lease.owner).where(Lease.name == name))


def test_a_lease_left_by_a_dead_process_of_this_machine_is_taken_at_once(db_url: str) -> None:
    db = Database(db_url)
    dead = _dead_owner()
    with db.write() as s:
        assert leases.try_acquire("retier", dead, 3600, session=s)
    with leases.holding(db, "retier", leases.new_owner(), 60) as held:
        assert held
        assert _holder(db, "retier") == held.owner
    db.dispose()


def test_a_live_holder_or_one_elsewhere_keeps_its_lease(db_url: str) -> None:
    db = Database(db_url)
    alive_here = leases.new_owner()  # this very process: alive
    host, pid, suffix, ns = _dead_owner().split(":")
    other_host = f"{host}x:{pid}:{suffix}:{ns}"  # another machine: cannot be checked
    other_ns = f"{host}:{pid}:{suffix}:{ns}1"  # another container with our host name
    old_form = f"{host}:{pid}:{suffix}"  # written before the namespace was part of the name
    for holder in (alive_here, other_host, other_ns, old_form):
        with db.write() as s:
            s.execute(update(Lease).where(Lease.name == "retier").values(owner=holder))
            leases.try_acquire("retier", holder, 3600, session=s)
        with leases.holding(db, "retier", leases.new_owner(), 60) as held:
            assert not held, holder
        assert _holder(db, "retier") == holder
    db.dispose()


def test_the_retier_lease_is_renewed_while_the_run_lasts(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retier, "LEASE_TTL", 0.6)
    monkeypatch.setattr(retier, "RENEW_SECONDS", 0.1)
    db = Database(db_url)
    with retier.exclusive(db=db, wait=0) as halt:
        assert halt is not None
        first = _expiry(db)
        wait_for(lambda: _expiry(db) > first, timeout=10, what="a renewal")
        # Past the TTL it started with, nobody else can take it: it is kept.
        with db.write() as s:
            assert not leases.try_acquire(retier.LEASE, "other", 60, session=s, now=first)
        assert not halt.is_set()
    assert _holder(db, retier.LEASE) is None  # let go at the end
    db.dispose()


def test_a_retier_that_lost_its_lease_is_told_to_stop(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retier, "RENEW_SECONDS", 0.1)
    db = Database(db_url)
    stop = threading.Event()
    with retier.exclusive(db=db, wait=0, stop=stop) as halt:
        assert halt is not None
        with db.write() as s:  # another run took over (this one stalled past the TTL)
            s.execute(update(Lease).where(Lease.name == retier.LEASE).values(owner="other"))
        wait_for(halt.is_set, timeout=10, what="the run told to stop")
        assert not stop.is_set()  # the process goes on; only this run stops
    db.dispose()


def _expiry(db: Database):  # type: ignore[no-untyped-def]
    with db.read() as s:
        return s.scalar(select(Lease.expires_at).where(Lease.name == retier.LEASE))


def test_the_owner_names_this_host_and_process() -> None:
    host, pid, _, ns = leases.new_owner().split(":")
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    assert ns == str(os.stat("/proc/self/ns/pid").st_ino)

"""The write queue: acks go ahead of background writes, and processes queue on one file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.db import Database
from bot.db.writequeue import PriorityLock


def _hold_and_queue(lock: PriorityLock, arrivals: list[tuple[str, bool]]) -> list[str]:
    """Hold the lock while waiters arrive in order; return the order they got it in."""
    order: list[str] = []
    lock.acquire()

    def wait(name: str, urgent: bool) -> None:
        lock.acquire(urgent=urgent)
        order.append(name)
        lock.release()

    threads = []
    for name, urgent in arrivals:
        t = threading.Thread(target=wait, args=(name, urgent))
        t.start()
        threads.append(t)
        time.sleep(0.05)  # let it reach its wait before the next one arrives
    lock.release()
    for t in threads:
        t.join(5)
    return order


def test_an_urgent_waiter_goes_ahead_of_ordinary_ones_already_waiting() -> None:
    order = _hold_and_queue(
        PriorityLock(), [("bg1", False), ("bg2", False), ("ack", True), ("bg3", False)]
    )
    assert order[0] == "ack"
    assert sorted(order[1:]) == ["bg1", "bg2", "bg3"]


def test_every_waiter_gets_the_lock_once() -> None:
    arrivals = [(f"w{i}", i % 3 == 0) for i in range(12)]
    order = _hold_and_queue(PriorityLock(), arrivals)
    assert sorted(order) == sorted(name for name, _ in arrivals)


def test_a_write_inside_a_write_is_refused_not_waited_for(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'n.db'}")
    with db.write():
        assert db.writing
        with pytest.raises(RuntimeError, match="inside another one"), db.write():
            pass
    assert not db.writing
    with db.write() as session:  # the queue was left free
        session.execute(text("SELECT 1"))
    db.dispose()


_CHILD = textwrap.dedent(
    """
    import sys, time
    from sqlalchemy import text
    from bot.db import Database

    db = Database(sys.argv[1])
    print("waiting", flush=True)
    with db.write() as session:
        print(f"got {time.time():.6f}", flush=True)
        session.execute(text("INSERT INTO leases (name, owner, expires_at) "
                             "VALUES ('child', 'c', '2030-01-01 00:00:00.000000')"))
    db.dispose()
    """
)


def test_another_process_waits_for_the_write_queue_not_only_for_sqlite(tmp_path: Path) -> None:
    from bot.db.migrate import upgrade_to_head

    url = f"sqlite:///{tmp_path / 'q.db'}"
    db = Database(url)
    upgrade_to_head(db.engine)
    with db.write() as session:
        # No statement yet, so SQLite's own lock is free: only the queue's file lock holds.
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, url], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "waiting"
        time.sleep(1.0)
        released = time.time()
        session.execute(text("SELECT 1"))
    out, _ = child.communicate(timeout=20)
    assert child.returncode == 0
    got = float(out.split()[-1])
    assert got >= released, "the other process wrote while this one held the write queue"
    assert (tmp_path / "q.db-writelock").exists()
    with db.read() as session:
        assert session.execute(text("SELECT owner FROM leases")).scalar_one() == "c"
    db.dispose()

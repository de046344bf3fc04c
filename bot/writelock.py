"""Write transactions that queue in-process before taking SQLite's database write lock.

SQLite lets one writer in at a time and makes the others sleep in its busy handler, in
growing steps up to 100 ms; under a burst of callbacks that turns into a convoy with
second-long waits. Queuing on a Python lock first hands the write lock over at once.

Callback acknowledgements have a latency target and background work does not, so an
`urgent` writer goes ahead of every background writer already waiting: an ack waits for
at most the transaction in progress, not for the queue behind it.

Several processes on one SQLite file (`tagbot serve --workers N`) queue the same way
across processes on an advisory lock file next to the database (`<file>-writelock`):
the kernel hands a released lock to the next process at once, where SQLite would sleep.
PostgreSQL needs none of this.
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.orm import Session

from bot.db import Database


class PriorityLock:
    """A mutex whose urgent waiters are let in before its ordinary waiters.

    Each release wakes one waiter (urgent first), not all of them: dozens of worker
    threads stampeding for the GIL on every release would cost the ack what it saves.
    """

    def __init__(self) -> None:
        mutex = threading.Lock()
        self._urgent = threading.Condition(mutex)
        self._ordinary = threading.Condition(mutex)
        self._held = False
        self._urgent_waiting = 0

    def acquire(self, *, urgent: bool = False) -> None:
        with self._urgent:
            if urgent:
                self._urgent_waiting += 1
                try:
                    while self._held:
                        self._urgent.wait()
                finally:
                    self._urgent_waiting -= 1
            else:
                while self._held or self._urgent_waiting:
                    self._ordinary.wait()
            self._held = True

    def release(self) -> None:
        with self._urgent:
            self._held = False
            if self._urgent_waiting:
                self._urgent.notify()
            else:
                self._ordinary.notify()


class FileLock:
    """An exclusive flock on a file, opened per process (a forked child must not share it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._pid = 0
        self._fd = -1

    def acquire(self) -> None:
        if self._pid != os.getpid():  # flock belongs to the open file: one per process
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)


@dataclass
class _Queue:
    here: PriorityLock
    across: FileLock | None  # None for an in-memory database


_queues: weakref.WeakKeyDictionary[Database, _Queue] = weakref.WeakKeyDictionary()
_guard = threading.Lock()
_holding = threading.local()  # ids of the databases whose write lock this thread holds


def holding(db: Database) -> bool:
    """Tell whether this thread is inside a `begin(db)` (another would wait for itself)."""
    return id(db) in getattr(_holding, "dbs", ())


def _queue_for(db: Database) -> _Queue:
    with _guard:
        queue = _queues.get(db)
        if queue is None:
            path = db.engine.url.database
            across = FileLock(f"{path}-writelock") if path and path != ":memory:" else None
            queue = _queues[db] = _Queue(PriorityLock(), across)
        return queue


@contextmanager
def begin(db: Database, *, urgent: bool = False) -> Iterator[Session]:
    """Open a write transaction, queuing in-process first on SQLite (never nest these).

    `urgent` is for the few short transactions someone waits on (the callback ack).
    """
    if not db.is_sqlite:
        with db.begin() as session:
            yield session
        return
    queue = _queue_for(db)
    queue.here.acquire(urgent=urgent)
    held: set[int] = _holding.__dict__.setdefault("dbs", set())
    held.add(id(db))
    try:
        if queue.across is None:
            with db.begin() as session:
                yield session
            return
        queue.across.acquire()
        try:
            with db.begin() as session:
                yield session
        finally:
            queue.across.release()
    finally:
        held.discard(id(db))
        queue.here.release()

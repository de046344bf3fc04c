"""The queue SQLite writers wait in, in-process and across processes, before its write lock.

`Database.write()` goes through it; nothing else needs to.

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
from collections.abc import Iterator
from contextlib import contextmanager


class PriorityLock:
    """A mutex whose urgent waiters are let in before its ordinary waiters.

    Each release wakes one waiter (urgent first), not all of them: dozens of worker
    threads stampeding for the GIL on every release would cost the ack what it saves.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._urgent = threading.Condition(self._mutex)
        self._ordinary = threading.Condition(self._mutex)
        self._held = False
        self._urgent_waiting = 0
        self._ordinary_waiting = 0

    def acquire(self, *, urgent: bool = False) -> None:
        mutex = self._mutex
        mutex.acquire()
        try:
            if self._held or (not urgent and self._urgent_waiting):
                self._wait(urgent=urgent)  # the uncontended case takes it without a Condition
            self._held = True
        finally:
            mutex.release()

    def _wait(self, *, urgent: bool) -> None:
        """Wait (holding the mutex) until this waiter may take the lock."""
        if urgent:
            self._urgent_waiting += 1
            try:
                while self._held:
                    self._urgent.wait()
            finally:
                self._urgent_waiting -= 1
        else:
            self._ordinary_waiting += 1
            try:
                while self._held or self._urgent_waiting:
                    self._ordinary.wait()
            finally:
                self._ordinary_waiting -= 1

    def release(self) -> None:
        mutex = self._mutex
        mutex.acquire()
        try:
            self._held = False
            # Notify only when someone waits: Condition.notify costs even with no waiter.
            if self._urgent_waiting:
                self._urgent.notify()
            elif self._ordinary_waiting:
                self._ordinary.notify()
        finally:
            mutex.release()


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


class WriteQueue:
    """The order one database's writers take its write lock in: urgent ones first."""

    def __init__(self, path: str | None) -> None:
        self.here = PriorityLock()
        # None for an in-memory database: no other process can see it
        self.across = FileLock(f"{path}-writelock") if path and path != ":memory:" else None

    @contextmanager
    def turn(self, *, urgent: bool = False) -> Iterator[None]:
        """Wait for this writer's turn, in this process and then across processes."""
        self.here.acquire(urgent=urgent)
        try:
            if self.across is None:
                yield
                return
            self.across.acquire()
            try:
                yield
            finally:
                self.across.release()
        finally:
            self.here.release()

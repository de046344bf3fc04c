"""A wake-up that wakes one waiting thread per signal, where threading.Event wakes them all.

A worker with many threads (the welcome lane's eight) waits on one wake-up. An Event set
for each offer wakes every idle thread; all but one find nothing, and each of those
empty steps costs CPU (a lock, the job's metrics, the GIL passed around) on every scan.
Here each `set()` is one permit: one waiting thread wakes and takes it, and a permit
given while every thread is busy lets the next thread to wait go on at once (permits
beyond the waiting threads plus one are not kept: busy threads drain the work anyway).
"""

from __future__ import annotations

import threading


class WakeOne:
    """Event-like: `wait`, `set`, `clear`; `set_all` wakes every waiter (stopping)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._permits = 0
        self._waiting = 0
        self._all = False

    def set(self) -> None:
        """Wake one waiting thread, or let the next `wait` return at once."""
        with self._cond:
            self._permits = min(self._permits + 1, self._waiting + 1)
            self._cond.notify()

    def set_all(self) -> None:
        """Wake every thread waiting now or later (the process is stopping)."""
        with self._cond:
            self._all = True
            self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a permit (taking it) for at most `timeout` seconds; True when woken."""
        with self._cond:
            if not self._ready():
                self._waiting += 1
                try:
                    self._cond.wait(timeout)
                finally:
                    self._waiting -= 1
                if not self._ready():
                    return False
            if not self._all:
                self._permits -= 1
            return True

    def clear(self) -> None:
        """Nothing to clear: a permit is taken by the `wait` it wakes."""

    def is_set(self) -> bool:
        with self._cond:
            return self._ready()

    def _ready(self) -> bool:
        return self._all or self._permits > 0

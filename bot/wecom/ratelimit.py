"""A thread-safe sliding-window limiter per API path, so one process never trips 45009."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class _Window:
    """The start times of the calls in the last window, including booked future slots."""

    def __init__(self) -> None:
        self.starts: deque[float] = deque()
        self.lock = threading.Lock()


class RateLimiter:
    """Allow at most `calls_per_minute` calls per API path in any `window` seconds.

    A sliding window rather than a smoothing bucket: WeCom counts per minute, so bursts
    (200 scans at once, each needing a welcome within 20 s) may go out at full speed as
    long as no 60 s span holds more than the limit.
    """

    def __init__(
        self,
        calls_per_minute: int,
        *,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if calls_per_minute < 1 or window <= 0:
            raise ValueError("calls_per_minute must be >= 1 and window > 0")
        self.limit = calls_per_minute
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def acquire(self, api: str) -> float:
        """Block until a call to `api` is allowed; return the seconds waited."""
        with self._lock:
            win = self._windows.get(api)
            if win is None:
                win = self._windows[api] = _Window()
        with win.lock:
            now = self._clock()
            starts = win.starts
            while starts and starts[0] <= now - self.window:
                starts.popleft()
            # Full: book the moment the limit-th most recent call leaves the window.
            # Bookings only grow, so the deque stays sorted.
            slot = now if len(starts) < self.limit else max(now, starts[-self.limit] + self.window)
            starts.append(slot)
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
        return wait

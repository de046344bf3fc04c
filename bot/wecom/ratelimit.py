"""A thread-safe token bucket per API path, so one process never bursts past WeCom's cap."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class _Bucket:
    """Reserve-ahead token bucket: each caller books a slot, then sleeps until it."""

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.clock = clock
        self.stamp = clock()
        self.lock = threading.Lock()

    def reserve(self) -> float:
        """Take one token (possibly going into debt) and return how long to wait for it."""
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= 1
            return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class RateLimiter:
    """Limit calls per API path to `calls_per_minute`, smoothing bursts to one second's worth."""

    def __init__(
        self,
        calls_per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = calls_per_minute / 60.0
        # A burst of one second's share (at least one call) keeps any 60 s window within
        # calls_per_minute + rate, well under WeCom's 10,000/min when configured below it.
        self.capacity = max(1.0, self.rate)
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def acquire(self, api: str) -> float:
        """Block until a call to `api` is allowed; return the seconds waited."""
        with self._lock:
            bucket = self._buckets.get(api)
            if bucket is None:
                bucket = self._buckets[api] = _Bucket(self.rate, self.capacity, self._clock)
        wait = bucket.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait

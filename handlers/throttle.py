"""Throttle repeated failed authentication per client address (429 with Retry-After).

Per process and in memory: enough to turn a guessing run into a trickle without a
shared store. The admin token and callback signatures count apart, so an attack on
/api never slows WeCom's callbacks; a valid callback is never throttled at all.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict, deque

from flask import request
from werkzeug.exceptions import TooManyRequests

from bot.config import ServerSettings
from handlers.context import runtime

# Enough for any real set of clients; past it the address idle longest is forgotten.
MAX_ADDRESSES = 10_000


class FailureThrottle:
    """Remember recent authentication failures per (scope, address)."""

    def __init__(self) -> None:
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, scope: str, address: str, *, limit: int, window: float) -> float:
        """Return the seconds until `address` may try again in `scope` (0: it may now)."""
        now = time.monotonic()
        with self._lock:
            times = self._failures.get((scope, address))
            if times is None:
                return 0.0
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) < limit:
                return 0.0
            return times[-limit] + window - now

    def failed(self, scope: str, address: str, *, limit: int) -> None:
        """Record one failure of `address` in `scope`."""
        key = (scope, address)
        with self._lock:
            times = self._failures.get(key)
            if times is None:
                times = self._failures[key] = deque(maxlen=limit + 1)
                if len(self._failures) > MAX_ADDRESSES:
                    self._failures.popitem(last=False)
            else:
                self._failures.move_to_end(key)
            times.append(time.monotonic())


def client_address(server: ServerSettings) -> str:
    """Return the client's address: the socket's, or X-Forwarded-For's behind a trusted proxy."""
    peer = request.remote_addr or ""
    if not server.trusted_proxies or not _trusted(peer, server.trusted_proxies):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed(hops):  # the rightmost address no trusted proxy vouches for
        if not _valid(hop):
            break
        if not _trusted(hop, server.trusted_proxies):
            return hop
        peer = hop
    return peer


def _valid(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _trusted(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in networks)


def refuse_if_throttled(scope: str) -> None:
    """Answer 429 now when this client has failed too often in `scope` lately."""
    server = runtime().settings.server
    throttle = runtime().local(FailureThrottle)
    wait = throttle.wait(
        scope,
        client_address(server),
        limit=server.auth_failure_limit,
        window=server.auth_failure_window_seconds,
    )
    if wait > 0:
        raise TooManyRequests(
            description="认证失败次数过多，请稍后再试 / too many failed attempts",
            retry_after=max(1, math.ceil(wait)),
        )


def record_failure(scope: str) -> None:
    """Count one failed authentication of this client in `scope`."""
    server = runtime().settings.server
    runtime().local(FailureThrottle).failed(
        scope, client_address(server), limit=server.auth_failure_limit
    )

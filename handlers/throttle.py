"""Throttle repeated failed authentication per client address (429 with Retry-After).

Counted in the database (bot.auth_failures), so every process of `serve --workers N`
refuses a guesser after the same number of failures. The admin token and callback
signatures count apart, so an attack on /api never slows WeCom's callbacks; a valid
callback is never throttled at all, nor even looked up.
"""

from __future__ import annotations

import ipaddress
import math
import time

from flask import request
from werkzeug.exceptions import TooManyRequests

from bot import auth_failures
from bot.config import ServerSettings
from handlers.context import runtime


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
    rt = runtime()
    server = rt.settings.server
    with rt.db.read() as session:
        wait = auth_failures.wait(
            scope,
            client_address(server),
            session=session,
            limit=server.auth_failure_limit,
            window=server.auth_failure_window_seconds,
            now=time.time(),
        )
    if wait > 0:
        raise TooManyRequests(
            description="认证失败次数过多，请稍后再试 / too many failed attempts",
            retry_after=max(1, math.ceil(wait)),
        )


def record_failure(scope: str) -> None:
    """Count one failed authentication of this client in `scope`."""
    rt = runtime()
    server = rt.settings.server
    with rt.db.write() as session:
        auth_failures.record(
            scope,
            client_address(server),
            session=session,
            window=server.auth_failure_window_seconds,
            now=time.time(),
        )

"""Route table of the fake /cgi-bin/ API and the checks every call goes through."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wecom_sim.api.params import BAD_JSON, INVALID, Call
from wecom_sim.state import ApiError, RateWindow, SimState

Handler = Callable[[SimState, Call], dict[str, Any]]

TOKEN_MISSING = 41001
TOKEN_INVALID = 40014
TOKEN_EXPIRED = 42001
RATE_LIMITED = 45009
UNKNOWN_API = 48001  # API功能未授权: the closest WeCom answer to a path it doesn't serve
RATE_WINDOW = 60.0
HOUR_WINDOW = 3600.0


@dataclass(frozen=True)
class Route:
    """An API path's HTTP method and handler."""

    method: str
    handler: Handler
    needs_token: bool


ROUTES: dict[str, Route] = {}


def route(path: str, method: str, *, needs_token: bool = True) -> Callable[[Handler], Handler]:
    """Register `handler` for an API path under /cgi-bin/."""

    def register(handler: Handler) -> Handler:
        ROUTES[path] = Route(method, handler, needs_token)
        return handler

    return register


def normalise(path: str) -> str:
    """Return an API path without the /cgi-bin/ prefix or slashes at either end."""
    path = path.strip("/")
    return path.removeprefix("cgi-bin/")


def _take_stall(state: SimState, path: str) -> float:
    with state.lock:
        queue = state.stalls.get(path)
        if not queue:
            return 0.0
        stall = queue[0]
        stall.remaining -= 1
        if stall.remaining <= 0:
            queue.pop(0)
        return stall.seconds


def _take_fault(state: SimState, path: str) -> int | None:
    window = state.fault_windows.get(path)
    if window is not None:
        if state.now() < window.until:
            return window.errcode
        del state.fault_windows[path]
    share = state.error_rates.get(path)
    if share is not None and share.rng.random() < share.rate:
        return share.errcode
    queue = state.faults.get(path)
    if not queue:
        return None
    fault = queue[0]
    fault.remaining -= 1
    if fault.remaining <= 0:
        queue.pop(0)
    return fault.errcode


def _check_token(state: SimState, token: str) -> None:
    if not token:
        raise ApiError(TOKEN_MISSING, "access_token missing")
    expires_at = state.tokens.get(token)
    if expires_at is None:
        raise ApiError(TOKEN_INVALID, "invalid access_token")
    if state.now() >= expires_at:
        raise ApiError(TOKEN_EXPIRED, "access_token expired")


def _count_in(windows: dict[str, RateWindow], path: str, now: float, span: float) -> int:
    window = windows.get(path)
    if window is None or now - window.started >= span:
        window = windows[path] = RateWindow(now)
    window.count += 1
    return window.count


def _check_rate(state: SimState, path: str) -> None:
    """Refuse a call over the per-API limits, per minute and per hour (doc 90312)."""
    now = state.now()  # the simulated clock, so advance_time() can end a window
    per_minute, per_hour = state.path_limits.get(path, (None, None))
    minute = _count_in(state.windows, path, now, RATE_WINDOW)
    hour = _count_in(state.hour_windows, path, now, HOUR_WINDOW)
    if minute > (per_minute if per_minute is not None else state.rate_limit_per_minute):
        raise ApiError(RATE_LIMITED, "api freq out of limit")
    if hour > (per_hour if per_hour is not None else state.rate_limit_per_hour):
        raise ApiError(RATE_LIMITED, "api freq out of limit: hourly")


def _decode_body(method: str, body: bytes) -> dict[str, Any]:
    if method != "POST" or not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        raise ApiError(BAD_JSON, "data format error: body is not JSON") from None
    if not isinstance(data, dict):
        raise ApiError(BAD_JSON, "data format error: body is not a JSON object")
    return data


def dispatch(
    state: SimState, path: str, method: str, query: Mapping[str, str], body: bytes
) -> tuple[int, dict[str, Any]]:
    """Answer one API call: stall, fault, method, token, rate limit, then the handler."""
    path = normalise(path)
    with state.lock:
        state.calls[path] += 1
    stall = _take_stall(state, path)
    if stall:
        time.sleep(stall)  # outside the lock: a stalled call must not stall the others
    status = 200
    with state.lock:
        try:
            fault = _take_fault(state, path)
            if fault is not None:
                raise ApiError(fault, "injected fault")
            target = ROUTES.get(path)
            if target is None:
                status = 404
                raise ApiError(UNKNOWN_API, f"api not found: {path}")
            if method != target.method:
                raise ApiError(INVALID, f"invalid request method {method}, use {target.method}")
            if target.needs_token:
                _check_token(state, query.get("access_token", ""))
            _check_rate(state, path)
            call = Call(query=query, body=_decode_body(method, body), method=method)
            answer = {"errcode": 0, "errmsg": "ok", **target.handler(state, call)}
        except ApiError as exc:
            answer = {"errcode": exc.errcode, "errmsg": exc.errmsg}
        state.calls[(path, answer["errcode"])] += 1
    return status, answer

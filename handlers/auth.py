"""Bearer-token protection for /api and the dashboard."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import abort, request

from handlers import throttle
from handlers.context import runtime

SCOPE = "admin"

P = ParamSpec("P")
R = TypeVar("R")


def token_ok(presented: str) -> bool:
    """Compare a presented token with the admin token in constant time."""
    expected = runtime().settings.server.admin_token.get_secret_value()
    return hmac.compare_digest(presented.encode(), expected.encode())


def require_admin(view: Callable[P, R]) -> Callable[P, R]:
    """Refuse the request with 401 unless it carries `Authorization: Bearer <admin_token>`."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        throttle.refuse_if_throttled(SCOPE)  # before the check: a guesser learns nothing more
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented or not token_ok(presented.strip()):
            throttle.record_failure(SCOPE)
            abort(401, description="missing or wrong Bearer token")
        return view(*args, **kwargs)

    return wrapper

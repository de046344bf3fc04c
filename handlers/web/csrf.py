"""CSRF tokens: one per session, sent back in a form field or htmx's header, checked here."""

from __future__ import annotations

import hmac

from flask import request

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def presented() -> str:
    """Return the token the request carries (form field first, then the header)."""
    return request.form.get(FIELD) or request.headers.get(HEADER, "")


def valid(expected: str) -> bool:
    """Tell whether the request carries `expected`, compared in constant time."""
    got = presented()
    return bool(expected) and bool(got) and hmac.compare_digest(got.encode(), expected.encode())

"""Sign and verify outreach webhook bodies: HMAC-SHA256 over "<timestamp>.<raw body>".

The receiver of a webhook (an SMS gateway, a mail or call-centre system) recomputes the
HMAC with the shared secret and compares in constant time. The timestamp is signed with
the body, so a captured request cannot be replayed later: `verify` refuses one older (or
further in the future) than `max_age` seconds. Standard library only, so a receiver
written in Python can copy this file as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import time

PREFIX = "sha256="


def sign(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """Return the X-Tagbot-Signature value for a body sent at `timestamp` (unix seconds)."""
    key = secret.encode() if isinstance(secret, str) else secret
    message = f"{timestamp}.".encode() + body
    return PREFIX + hmac.new(key, message, hashlib.sha256).hexdigest()


def verify(
    secret: str | bytes,
    timestamp: int | str | None,
    body: bytes,
    header: str | None,
    *,
    max_age: float,
    now: float | None = None,
) -> bool:
    """Tell whether `header` signs `body` at `timestamp` and the timestamp is fresh."""
    if not header or timestamp is None:
        return False
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > max_age:
        return False
    return hmac.compare_digest(sign(secret, sent, body).encode(), header.strip().encode())

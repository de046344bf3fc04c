"""Refusals on the callback URL: the timestamp window, the metric, the throttle."""

from __future__ import annotations

import time

from prometheus_client import Counter
from werkzeug.exceptions import TooManyRequests

from bot.config import WeComSettings
from bot.errors import CallbackError
from handlers import throttle

REJECTED = Counter(
    "tagbot_callback_rejected_total",
    "Callbacks refused, by reason (stale, signature, too_large, throttled, invalid)",
    ["reason"],
)
SCOPE = "callback"


class StaleCallbackError(CallbackError):
    """A validly signed callback whose timestamp lies outside the accepted window."""


def check_timestamp(timestamp: str, wecom: WeComSettings) -> None:
    """Refuse a (signed) query timestamp too old to be a re-delivery, or from the future."""
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise CallbackError("query parameter timestamp is not a Unix time", status=400)
    skew = time.time() - int(timestamp)
    if skew > wecom.callback_max_age_seconds or -skew > wecom.callback_max_ahead_seconds:
        raise StaleCallbackError(
            f"callback timestamp {timestamp} is {skew:.0f} s from now, outside the window",
            status=400,
        )


def _reason(exc: CallbackError) -> str:
    if isinstance(exc, StaleCallbackError):
        return "stale"
    return {401: "signature", 413: "too_large"}.get(exc.status, "invalid")


def refused(exc: CallbackError) -> None:
    """Count a refused callback; past the limit, answer a bad signature with 429 instead."""
    REJECTED.labels(_reason(exc)).inc()
    if exc.status != 401:
        return
    try:
        throttle.refuse_if_throttled(SCOPE)
    except TooManyRequests:
        REJECTED.labels("throttled").inc()
        raise
    throttle.record_failure(SCOPE)

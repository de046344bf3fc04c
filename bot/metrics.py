"""Process metrics for /metrics; gauges that need the database are refreshed per scrape."""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import Gauge

from bot.runtime import Runtime

log = logging.getLogger(__name__)

# Modules that own a gauge register a refresher here (inbox depth, outbox depth...).
_refreshers: list[Callable[[Runtime], None]] = []

UP = Gauge("tagbot_up", "1 while the tagbot process serves")
UP.set(1)


def register_refresher(fn: Callable[[Runtime], None]) -> Callable[[Runtime], None]:
    """Register a function that updates gauges from the database before each scrape."""
    _refreshers.append(fn)
    return fn


def refresh_gauges(rt: Runtime) -> None:
    """Run every registered refresher; one failing does not hide the others."""
    for fn in _refreshers:
        try:
            fn(rt)
        except Exception:
            log.exception("metrics refresher %s failed", getattr(fn, "__name__", fn))

"""Process metrics for /metrics, registered by the app factory and the job runner.

Modules define their collectors unregistered (`registry=None`) and list them in a
`METRICS` tuple; whoever builds a process registers the ones it serves. Gauges read
from the database are refreshed per scrape by the refreshers bound to the Runtime.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from prometheus_client import REGISTRY, Gauge
from prometheus_client.registry import Collector

from bot.runtime import Runtime

log = logging.getLogger(__name__)

Refresher = Callable[[Runtime], None]

UP = Gauge("tagbot_up", "1 while the tagbot process serves", registry=None)
METRICS = (UP,)

_registered: list[Collector] = []
_guard = threading.Lock()


def register(collectors: Iterable[Collector]) -> None:
    """Register collectors with the default registry, each once per process."""
    with _guard:
        for c in collectors:
            if not any(c is r for r in _registered):
                REGISTRY.register(c)
                _registered.append(c)


class Refreshers:
    """The functions that update one Runtime's gauges from the database before a scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fns: list[Refresher] = []

    def add(self, fn: Refresher) -> None:
        with self._lock:
            if fn not in self._fns:
                self._fns.append(fn)

    def all(self) -> list[Refresher]:
        with self._lock:
            return list(self._fns)


def add_refreshers(rt: Runtime, fns: Iterable[Refresher]) -> None:
    """Have these functions run before each scrape of this Runtime's /metrics."""
    refreshers = rt.local(Refreshers)
    for fn in fns:
        refreshers.add(fn)


def refresh_gauges(rt: Runtime) -> None:
    """Run every refresher bound to the Runtime; one failing does not hide the others."""
    for fn in rt.local(Refreshers).all():
        try:
            fn(rt)
        except Exception:
            log.exception("metrics refresher %s failed", getattr(fn, "__name__", fn))

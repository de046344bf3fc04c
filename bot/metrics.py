"""Process metrics for /metrics, registered by the app factory and the job runner.

Modules define their collectors unregistered (`registry=None`) and list them in a
`METRICS` tuple; whoever builds a process registers the ones it serves. Gauges read
from the database are refreshed per scrape by the refreshers bound to the Runtime.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Protocol

from prometheus_client import REGISTRY, Gauge
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

from bot.db import Database

log = logging.getLogger(__name__)


class Refresher(Protocol):
    """Update gauges from the database, in the read transaction it is given."""

    def __call__(self, *, session: Session) -> None: ...


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
    """The functions that update one process's gauges before a scrape (a Runtime part)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fns: list[Refresher] = []

    def add(self, fns: Iterable[Refresher]) -> None:
        """Have these functions run before each scrape of this process's /metrics."""
        with self._lock:
            for fn in fns:
                if fn not in self._fns:
                    self._fns.append(fn)

    def all(self) -> list[Refresher]:
        with self._lock:
            return list(self._fns)


def refresh_gauges(*, db: Database, refreshers: Refreshers) -> None:
    """Run every refresher, each in its own read; one failing does not hide the others."""
    for fn in refreshers.all():
        try:
            with db.read() as session:
                fn(session=session)
        except Exception:
            log.exception("metrics refresher %s failed", getattr(fn, "__name__", fn))

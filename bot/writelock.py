"""Write transactions that queue in-process before taking SQLite's database write lock.

SQLite lets one writer in at a time and makes the others sleep in its busy handler, in
growing steps up to 100 ms; under a burst of callbacks that turns into a convoy with
second-long waits. Queuing on a Python lock first hands the write lock over at once.
PostgreSQL needs none of this.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from bot.db import Database

_locks: weakref.WeakKeyDictionary[Database, threading.Lock] = weakref.WeakKeyDictionary()
_guard = threading.Lock()


def _lock_for(db: Database) -> threading.Lock:
    with _guard:
        lock = _locks.get(db)
        if lock is None:
            lock = _locks[db] = threading.Lock()
        return lock


@contextmanager
def begin(db: Database) -> Iterator[Session]:
    """Open a write transaction, queuing in-process first on SQLite (never nest these)."""
    if not db.is_sqlite:
        with db.begin() as session:
            yield session
        return
    with _lock_for(db), db.begin() as session:
        yield session

"""One clock for every process: the database's, measured and followed.

Leases (the scheduler's, heartbeats), claim deadlines (inbox, outbox, campaign tasks) and
the WeCom budget slots are times one process writes and another compares with its own
"now". Each machine's clock would do on one machine; across machines a clock T seconds
ahead takes a live lease or claim over T seconds early and books budget slots shifted by T
(an overrun WeCom minute). So every process reads the time as the database's clock:
`bot.db.types.utcnow()` and `wall()` add the offset measured here.

Followed, not refused: a process measures `clock_timestamp()` against its own clock at
start (before any claim) and every SYNC_SECONDS after, and uses the database's time
whatever the skew (logged past WARN_SECONDS). Measuring costs one statement every two
seconds per process and none on a scan. Refusing to start past a bound would still leave
every skew under the bound in play, and a clock stepped after the start unguarded.
SQLite is one machine: its clock is the clock, nothing is measured.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import text

from bot.db.session import Database
from bot.db.types import set_db_offset

log = logging.getLogger("tagbot.clock")

SYNC_SECONDS = 2.0
WARN_SECONDS = 1.0
_NOW = text("SELECT extract(epoch FROM clock_timestamp())")


def measure(db: Database) -> float | None:
    """Return how far the database's clock runs ahead of ours (seconds); None on SQLite."""
    if db.engine.dialect.name != "postgresql":
        return None
    with db.read() as session:
        session.execute(text("SELECT 1"))  # the connection is open: time one round trip
        before = time.time()
        theirs = float(session.execute(_NOW).scalar_one())
        after = time.time()
    return theirs - (before + after) / 2


_warned = threading.Event()


def sync(db: Database) -> float | None:
    """Measure the offset and make this process's clock follow it; return it."""
    offset = measure(db)
    if offset is None:
        return None
    set_db_offset(offset)
    if abs(offset) <= WARN_SECONDS:
        _warned.clear()
    elif not _warned.is_set():  # once per excursion, not every two seconds
        _warned.set()
        log.warning(
            "this machine's clock is %+.3f s off the database's; using the database's", -offset
        )
    return offset


def follow(db: Database, stopping: threading.Event) -> threading.Thread | None:
    """Sync now, then every SYNC_SECONDS until `stopping` (PostgreSQL); the thread or None."""
    if sync(db) is None:
        return None

    def loop() -> None:
        while not stopping.wait(SYNC_SECONDS):
            try:
                sync(db)
            except Exception:  # the database is away: keep the last offset, try again
                log.warning("could not read the database's clock", exc_info=True)

    t = threading.Thread(target=loop, name="db-clock", daemon=True)
    t.start()
    return t

"""Read from a streaming replica only once it has replayed what the primary had.

The nightly re-tier may read a replica (`[database] analytics_url`): it also reads the
tiers customers hold now, which a lagging replica would show stale. So it takes the
primary's WAL position first and waits, bounded, until the replica has replayed past it.
"""

from __future__ import annotations

import time

from sqlalchemy import text

from bot.db.session import Database

_PRIMARY_LSN = text("SELECT pg_current_wal_lsn()::text")
# A server not in recovery is no standby (a copy, a logical replica): nothing to wait for.
_REPLAYED = text(
    "SELECT NOT pg_is_in_recovery()"
    " OR coalesce(pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn), false)"
)


def caught_up(primary: Database, replica: Database, *, timeout: float, poll: float = 0.2) -> bool:
    """Return whether `replica` has replayed the primary's WAL as of now, within `timeout` s."""
    with primary.engine.connect() as conn:
        lsn = conn.execute(_PRIMARY_LSN).scalar_one()
    deadline = time.monotonic() + timeout
    while True:
        with replica.engine.connect() as conn:
            if conn.execute(_REPLAYED, {"lsn": lsn}).scalar_one():
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)

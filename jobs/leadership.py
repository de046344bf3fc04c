"""Which process runs the scheduled jobs: the one holding the scheduler lease.

The holder renews the lease every LEASE_RENEW seconds and relies on it only until the
TTL it last renewed runs out: a process that stalled past that (a pause, a lost
database) runs no scheduled job until a renewal confirms that no one took over. A
holder of this host and PID namespace that died (kill -9) is replaced at the next
renewal, not at its lease's expiry (bot/leases.py, take_from_dead).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bot import leases
from bot.db import Database
from bot.db.types import utcnow

log = logging.getLogger("tagbot.jobs")

SCHEDULER_LEASE = "scheduler"
LEASE_TTL = 60.0
LEASE_RENEW = 15.0


class Leadership:
    """This process's hold on the scheduler lease, and until when it may rely on it."""

    def __init__(
        self, db: Database, owner: str, *, ttl: float = LEASE_TTL, clock: leases.Clock = utcnow
    ) -> None:
        self._db = db
        self.owner = owner
        self._ttl = ttl
        self._clock = clock
        self._until: datetime | None = None  # None: we do not hold the lease

    def renew(self) -> bool:
        """Renew the lease we hold, or try to take it; return whether we lead now."""
        now = self._clock()  # before the write: the row's expiry is never earlier
        holding = self._until is not None
        try:
            with self._db.write() as session:
                if holding:
                    held = leases.renew(
                        SCHEDULER_LEASE, self.owner, self._ttl, session=session, now=now
                    )
                else:
                    held = leases.try_acquire(
                        SCHEDULER_LEASE, self.owner, self._ttl, session=session, now=now
                    ) or leases.take_from_dead(  # a holder of this host killed: at once
                        SCHEDULER_LEASE, self.owner, self._ttl, session=session, now=now
                    )
        except Exception:
            log.exception("could not renew the scheduler lease")
            return self.leads()  # what we hold stays ours until it lapses
        if held and not holding:
            log.info("this process now runs the scheduled jobs (%s)", self.owner)
        elif holding and not held:
            log.warning("another process took the scheduler lease over; %s stops", self.owner)
        self._until = now + timedelta(seconds=self._ttl) if held else None
        return held

    def leads(self) -> bool:
        """Return whether this process may run a scheduled job now."""
        until = self._until
        return until is not None and self._clock() < until

    def release(self) -> None:
        """Give the lease up, so another process takes over at its next renewal."""
        self._until = None
        with self._db.write() as session:
            leases.release(SCHEDULER_LEASE, self.owner, session=session)

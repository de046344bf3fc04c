"""What the durable queues share: due rows, claim deadlines, backoff, dead letters, depth.

A queue is a table with `status`, `attempts`, `next_attempt_at`, `locked_until` and
`last_error`. A row is due when it is pending and its time has come, or when the worker
that took it held it past its claim deadline (it died). A failure either schedules a
retry with exponential, jittered backoff or, past the attempt budget or when retrying
cannot help, leaves the row `dead` for an operator to read and replay.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Gauge
from sqlalchemy import ColumnElement, Table, update
from sqlalchemy.orm import Session

from bot.db.queries import count_by_status
from bot.db.types import utcnow
from bot.states import QueueStatus

ERROR_MAX = 4000


def backoff_seconds(attempts: int, *, base: float = 2.0, cap: float = 600.0) -> float:
    """Return the wait before retry number `attempts`: exponential with jitter, capped."""
    wait: float = min(cap, base**attempts)
    return wait * random.uniform(0.75, 1.25)


@dataclass(frozen=True)
class Queue:
    """One queue table and its rules."""

    table: Table
    taken: str  # the status of a row a worker holds
    statuses: tuple[str, ...]
    max_attempts: int
    claim_seconds: float = 60.0
    depth: Gauge | None = None
    # extra columns set when a row goes dead (the inbox stamps processed_at)
    dead_values: Mapping[str, Any] = field(default_factory=dict)

    def due(self, now: Any) -> ColumnElement[bool]:
        """SQL: rows pending and due, or held past their claim deadline."""
        c = self.table.c
        due: ColumnElement[bool] = (
            (c.status == QueueStatus.PENDING) & (c.next_attempt_at <= now)
        ) | ((c.status == self.taken) & (c.locked_until < now))
        return due

    def claim_deadline(self, now: datetime) -> datetime:
        """Return when a claim taken now is considered abandoned."""
        return now + timedelta(seconds=self.claim_seconds)

    def fail(
        self,
        row_id: int,
        attempts: int,
        error: str,
        *,
        session: Session,
        retryable: bool = True,
        **extra: Any,
    ) -> bool:
        """Record a failure of a taken row: retry later, or dead-letter it; True when dead."""
        dead = not retryable or attempts >= self.max_attempts
        values: dict[str, Any] = {"last_error": error[:ERROR_MAX], "locked_until": None, **extra}
        if dead:
            values.update(
                status=QueueStatus.DEAD, **{k: _value(v) for k, v in self.dead_values.items()}
            )
        else:
            wait = backoff_seconds(attempts)
            values.update(
                status=QueueStatus.PENDING, next_attempt_at=utcnow() + timedelta(seconds=wait)
            )
        session.execute(update(self.table).where(self.table.c.id == row_id).values(**values))
        return dead

    def counts(self, *, session: Session) -> dict[str, int]:
        """Return how many rows are in each status."""
        return count_by_status(self.table.c.status, self.statuses, session=session)

    def refresh_depth(self, *, session: Session) -> None:
        """Set the depth gauge from the database (before each scrape)."""
        if self.depth is None:
            return
        for status, n in self.counts(session=session).items():
            self.depth.labels(status).set(n)


def _value(v: Any) -> Any:
    return v() if callable(v) else v

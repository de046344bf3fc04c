"""Pushing tier tags: ensure the tags, queue the diff, drain the outbox with progress.

The outbox is durable, so a push that needs hours survives restarts: queued operations
stay pending (highest value first) until a worker or the next `tagbot push` sends them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.config import TieringSettings
from bot.db import Database
from bot.db.models import OutboxOperation
from bot.db.types import utcnow
from bot.states import OutboxStatus
from bot.tags import diff, outbox, tier_tags
from bot.tags.diff import DiffReport
from bot.tags.tier_tags import TierTagReport
from bot.wecom.client import WeComClient

RATE_WINDOW = timedelta(minutes=5)  # recent throughput the ETA is measured over
# Fewer operations than this give no rate: three calls in a second say nothing of an hour.
RATE_MIN_SAMPLE = 10


@dataclass(frozen=True)
class TierPushPlan:
    """What queuing the tier tags did: the tag work in WeCom and the diff queued."""

    tags: TierTagReport
    diff: DiffReport


def enqueue_tier_push(
    *,
    db: Database,
    wecom: WeComClient,
    tiering: TieringSettings,
    outbox_wakeup: threading.Event,
    priority_dimension: str | None = None,
    refresh: bool = False,
    find_dropped: bool = True,
    customer_ids: Sequence[int] | None = None,
) -> TierPushPlan:
    """Ensure every dimension's tier tags exist in WeCom, then queue the tier diff.

    `customer_ids` limits the diff to those customers' relations (a touched re-tier);
    None diffs every relation (the nightly run, `tagbot push --tiers`).
    `find_dropped=False` skips looking for dimensions removed from config (a scan of
    every assignment), for touched re-tiers: the next full run deletes their tags.
    `outbox_wakeup` wakes this process's outbox workers when something was queued.
    """
    with db.read() as session:
        dims = tier_tags.dimensions(tiering, session=session)
    tags = tier_tags.sync_tier_tags(
        db=db, wecom=wecom, dims=dims, refresh=refresh, dropped=find_dropped
    )
    queued = diff.enqueue_tier_changes(
        db=db, dims=dims, priority_dimension=priority_dimension, customer_ids=customer_ids
    )
    if queued.changed:
        outbox_wakeup.set()
    return TierPushPlan(tags, queued)


@dataclass(frozen=True)
class PushProgress:
    """Outbox counts, the recent rate and the time left at that rate."""

    pending: int
    in_flight: int
    done: int
    dead: int
    # operations finished per minute while they were being sent, over the last minutes;
    # None when too few finished to tell (then the ETA goes by the budget)
    per_minute: float | None
    eta_seconds: float | None  # None when there is no rate to go by

    @property
    def remaining(self) -> int:
        return self.pending + self.in_flight


def recent_rate(session: Session, *, now: datetime | None = None) -> float | None:
    """Return operations per minute between the first and last finished lately, or None.

    Measured over the time they took, not over the whole window: 30 operations sent in
    two seconds and then nothing went at 900/min, not at 6.
    """
    since = (now or utcnow()) - RATE_WINDOW
    n, first, last = session.execute(
        select(func.count(), func.min(OutboxOperation.done_at), func.max(OutboxOperation.done_at))
        .select_from(OutboxOperation)
        .where(OutboxOperation.status == OutboxStatus.DONE, OutboxOperation.done_at >= since)
    ).one()
    if n < RATE_MIN_SAMPLE or first is None or last is None or last <= first:
        return None
    return float((n - 1) / (last - first).total_seconds() * 60)


def progress(
    session: Session, *, fallback_per_minute: float | None = None, now: datetime | None = None
) -> PushProgress:
    """Return where the outbox stands; the ETA uses the last minutes' rate, else the fallback."""
    counts = outbox.counts(session=session)
    per_minute = recent_rate(session, now=now)
    rate = per_minute or (fallback_per_minute or 0.0)
    remaining = counts[OutboxStatus.PENDING] + counts[OutboxStatus.IN_FLIGHT]
    eta = remaining / rate * 60 if rate else None
    if not remaining:
        eta = 0.0
    return PushProgress(
        counts[OutboxStatus.PENDING],
        counts[OutboxStatus.IN_FLIGHT],
        counts[OutboxStatus.DONE],
        counts[OutboxStatus.DEAD],
        per_minute,
        eta,
    )


def _next_due_in(session: Session) -> float | None:
    """Seconds until the earliest pending (backing-off) operation is due; None if none."""
    first = session.scalar(
        select(func.min(OutboxOperation.next_attempt_at)).where(
            OutboxOperation.status.in_((OutboxStatus.PENDING, OutboxStatus.IN_FLIGHT))
        )
    )
    if first is None:
        return None
    return max(0.0, (first - utcnow()).total_seconds())


def drain_all(
    *,
    db: Database,
    wecom: WeComClient,
    stopping: threading.Event,
    batch: int = 20,
    max_operations: int | None = None,
    stop: threading.Event | None = None,
    on_progress: Callable[[int], None] | None = None,
    idle_poll: float = 1.0,
) -> int:
    """Drain the outbox until nothing is left to send; return how many operations ran.

    Waits for operations backing off after a transient error. Stops early when `stop`
    is set or after `max_operations`; what is left stays queued for the next drain.
    `stopping` is the process's stop (the event `wecom` was built with).
    """
    handled = 0
    # The process stopping also ends the drain (its budget waits give up at once).
    while not (stop is not None and stop.is_set()) and not stopping.is_set():
        if max_operations is not None and handled >= max_operations:
            break
        limit = batch if max_operations is None else min(batch, max_operations - handled)
        n = outbox.drain(db=db, wecom=wecom, limit=limit)
        handled += n
        if n:
            if on_progress is not None:
                on_progress(n)
            continue
        with db.read() as session:
            wait = _next_due_in(session)
        if wait is None:
            break
        # Backing off, or claimed by a worker that may have died: look again shortly.
        if stop is not None:
            stop.wait(min(idle_poll, wait or idle_poll))
        else:
            time.sleep(min(idle_poll, wait or idle_poll))
    return handled

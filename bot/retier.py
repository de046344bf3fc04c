"""Re-tier from settings and hand the new tiers on: the tier alerts, then the tier push.

This sits above bot/tiering, bot/tags and bot/outreach, the three packages a writing run
reaches, so that none of them imports another to hand on (tiering used to import outreach
for the alerts, and outreach reads tiering for its audiences: a package cycle).

Runs that write take the `retier` lease first, so a full run and a touched re-tier never
diff against the same assignments at once (each move would be recorded twice).

After a writing run the built-in tier alerts (bot.outreach.tier_alerts: a 高价值 customer
entering 沉睡客户 or 流失预警) are queued first, as they need only the database. Then the tier
tags are ensured in WeCom and the diff of desired against actual relation tags is queued
in the outbox (`bot.tags.push.enqueue_tier_push`): one mark_tag per changed relation,
drained by the outbox workers or `tagbot push`. When WeCom cannot be reached the tiers stay
recorded and nothing is lost: the next run, or `tagbot push --tiers`, queues the same diff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime

from bot import leases
from bot.config import Settings
from bot.db import Database
from bot.db.replica import caught_up
from bot.errors import TagbotError, WeComError
from bot.outreach.tier_alerts import queue_tier_alerts
from bot.rules import load_dimensions
from bot.tags.push import enqueue_tier_push
from bot.tiering.engine import MetricsEngine
from bot.tiering.run import ProgressFn, RetierReport, retier
from bot.wecom.client import WeComClient

log = logging.getLogger(__name__)

# How long a full run waits for the replica of `[database] analytics_url` to replay what
# the primary had when the run took its lease, before reading the primary instead.
REPLICA_WAIT = 60.0


@contextmanager
def analytics_source(db: Database, url: str) -> Iterator[Database | None]:
    """Yield the replica at `url` once caught up with `db`, or None: read `db` itself."""
    if not url:
        yield None
        return
    replica = Database(url)
    try:
        if caught_up(db, replica, timeout=REPLICA_WAIT):
            log.info("retier: reading the replica of [database] analytics_url")
            yield replica
        else:
            log.warning(
                "retier: the analytics_url replica is more than %.0fs behind: reading the primary",
                REPLICA_WAIT,
            )
            yield None
    finally:
        replica.dispose()


LEASE = "retier"
# Kept alive every RENEW_SECONDS by a thread while the run lasts, so a holder that died
# (kill -9, or a full disk that kept it from letting go) frees it within this, not an hour.
LEASE_TTL = 120.0
RENEW_SECONDS = 20.0


class RetierBusyError(TagbotError):
    """Another re-tier holds the lease."""


@dataclass(frozen=True)
class Handoff:
    """What the hand-off queued; `queued` is None when WeCom could not be reached."""

    queued: int | None  # changed relations queued (one mark_tag each)
    error: str = ""
    alerts: int = 0  # tier alerts queued for staff


@contextmanager
def exclusive(
    *, db: Database, wait: float, stop: threading.Event | None = None
) -> Iterator[threading.Event | None]:
    """Hold the re-tier lease for the block; yield None when not got within `wait` s.

    Otherwise yield the run's stop event: set when `stop` (the process stopping) is, or when
    the lease was lost — renewed every RENEW_SECONDS by a thread, it is lost only if this
    process stalled past LEASE_TTL and another run took over, and then this one must stop
    before it records anything more.
    """
    with leases.holding(db, LEASE, leases.new_owner(), LEASE_TTL, wait=wait) as held:
        if not held:
            yield None
            return
        halt = threading.Event()
        if stop is not None and stop.is_set():
            halt.set()
        done = threading.Event()

        def keep() -> None:
            due = time.monotonic() + RENEW_SECONDS
            while not done.wait(min(1.0, RENEW_SECONDS)):
                if stop is not None and stop.is_set():
                    halt.set()
                if time.monotonic() < due:
                    continue
                due = time.monotonic() + RENEW_SECONDS
                try:
                    held.renew()
                except leases.LeaseLostError:
                    log.error("re-tier lease lost to another run: stopping this one")
                    halt.set()
                    return
                except Exception as exc:  # the database is away: the TTL still has room
                    log.warning("re-tier lease not renewed: %s", exc)

        keeper = threading.Thread(target=keep, name="retier-lease", daemon=True)
        keeper.start()
        try:
            yield halt
        finally:
            done.set()
            keeper.join()


def queue_tier_push(
    *,
    db: Database,
    wecom: WeComClient,
    settings: Settings,
    outbox_wakeup: threading.Event,
    customer_ids: Sequence[int] | None = None,
) -> Handoff:
    """Queue the tier tags of the current assignments for WeCom (the push's diff).

    A touched run passes its customers: only their relations are diffed.
    """
    try:
        # A touched run leaves removed dimensions (a scan of every assignment) to full runs.
        plan = enqueue_tier_push(
            db=db,
            wecom=wecom,
            tiering=settings.tiering,
            outbox_wakeup=outbox_wakeup,
            customer_ids=customer_ids,
            find_dropped=customer_ids is None,
        )
    except WeComError as exc:
        log.warning("tier push not queued (WeCom: %s); tiers are recorded", exc)
        return Handoff(queued=None, error=str(exc))
    return Handoff(queued=plan.diff.changed)


def hand_off(
    *,
    db: Database,
    wecom: WeComClient,
    settings: Settings,
    outbox_wakeup: threading.Event,
    alerts_wakeup: threading.Event,
    customer_ids: Sequence[int] | None = None,
) -> Handoff:
    """Queue what a writing run hands on: the tier alerts for staff, then the tier push."""
    alerts = queue_tier_alerts(db=db, settings=settings, alerts_wakeup=alerts_wakeup)
    pushed = queue_tier_push(
        db=db,
        wecom=wecom,
        settings=settings,
        outbox_wakeup=outbox_wakeup,
        customer_ids=customer_ids,
    )
    return replace(pushed, alerts=alerts)


def unknown_group_names(db: Database, settings: Settings) -> list[str]:
    """Name each rule's group that no live group has, logged as a warning (full runs)."""
    from bot.groups.names import reads_groups, rule_group_problems

    if not reads_groups(settings):
        return []
    with db.read() as session:
        problems = rule_group_problems(settings, session=session) or []
    for problem in problems:
        log.warning("re-tier: a rule names a group no live group has: %s", problem)
    return problems


def retier_configured(
    *,
    db: Database,
    wecom: WeComClient,
    settings: Settings,
    outbox_wakeup: threading.Event,
    alerts_wakeup: threading.Event,
    as_of: datetime | None = None,
    dry_run: bool = False,
    customer_ids: Iterable[int] | None = None,
    engine: MetricsEngine | None = None,
    on_progress: ProgressFn | None = None,
    wait: float = 120.0,
    stop: threading.Event | None = None,
) -> tuple[RetierReport, Handoff | None]:
    """Run the configured dimensions; unless dry, hand the new tiers on (alerts, push).

    A writing run waits up to `wait` seconds for another run to finish, then raises
    RetierBusyError.
    """
    dims = load_dimensions(settings.tiering.dimensions)
    ids = None if customer_ids is None else sorted({int(i) for i in customer_ids})
    warnings = unknown_group_names(db, settings) if ids is None else []

    def run(stop: threading.Event | None) -> RetierReport:
        full = ids is None and engine is None
        with analytics_source(db, settings.database.analytics_url if full else "") as source:
            return retier(
                db,
                dims,
                tz=settings.app.timezone,
                as_of=as_of,
                dry_run=dry_run,
                customer_ids=ids,
                engine=engine,
                on_progress=on_progress,
                stop=stop,
                read_from=source,
            )

    if dry_run:
        report = run(stop)
        report.warnings.extend(warnings)
        return report, None
    with exclusive(db=db, wait=wait, stop=stop) as halt:
        if halt is None:
            raise RetierBusyError("另一个分层任务正在运行，请稍后再试 / another re-tier is running")
        report = run(halt)
    report.warnings.extend(warnings)
    # A touched run diffs its own customers' relations only: nobody else's tiers moved.
    handoff = hand_off(
        db=db,
        wecom=wecom,
        settings=settings,
        outbox_wakeup=outbox_wakeup,
        alerts_wakeup=alerts_wakeup,
        customer_ids=ids,
    )
    return report, handoff

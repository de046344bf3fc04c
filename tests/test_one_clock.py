"""One clock: a process whose machine runs a lease TTL ahead steals no live lease or claim
and overruns no WeCom minute, because every process reads the time as the database's.

The ahead process is a real `tagbot serve` run under libfaketime (Debian `faketime`).
PostgreSQL only: SQLite is one machine, whose clock is every process's clock.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot.db import Database
from bot.db.models import Lease, OutboxOperation, Tag
from bot.db.types import utcnow
from bot.states import OutboxStatus
from bot.tags import outbox
from bot.wecom.budget import SharedBudget
from jobs.leadership import LEASE_TTL, SCHEDULER_LEASE
from tests.support.configs import toml_text
from tests.support.corp import CORP_ID
from tests.support.processes import served_config, start
from tests.support.waiting import wait_for
from wecom_sim import Simulator

pytestmark = pytest.mark.slow  # a real `tagbot serve` process

AHEAD = LEASE_TTL + 5  # seconds: past the scheduler lease, an outbox claim and the minute
MARK_TAG = "externalcontact/mark_tag"
PER_MINUTE = 10
NORMAL = "normal-process"


LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def _libfaketime() -> str:
    found = LIBFAKETIME if shutil.which("faketime") and Path(LIBFAKETIME).exists() else None
    if found is None:
        pytest.skip(
            "libfaketime is not installed (Debian package faketime; `make test` installs it)"
        )
    return found


def _ops(db: Database) -> dict[int, OutboxOperation]:
    with db.read() as session:
        return {op.id: op for op in session.scalars(select(OutboxOperation))}


def _beat_expiry(db: Database) -> float | None:
    """The served process's heartbeat expiry (seconds since the epoch), once it beats."""
    with db.read() as session:
        at = session.scalar(select(Lease.expires_at).where(Lease.name.startswith("beat:")))
    return None if at is None else at.timestamp()


def test_a_process_a_lease_ttl_ahead_steals_nothing_and_keeps_the_minute(
    tmp_path: Path, db_url: str, simulator: Simulator
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite is one machine: its clock is every process's clock")
    lib = _libfaketime()
    config, _port, _state = served_config(tmp_path, db_url, simulator)
    cfg = tomllib.loads(config.read_text(encoding="utf-8"))
    cfg["limits"] = {
        "calls_per_minute": PER_MINUTE,
        "calls_per_hour": 100 * PER_MINUTE,
        "interactive_reserve": 0.0,
    }
    config.write_text(toml_text(cfg), encoding="utf-8")
    exts = [simulator.add_relation("alice") for _ in range(3)]
    db = Database(db_url)
    try:
        # A normal process (this one, on the database's machine) holds the scheduler lease,
        # holds a live claim on one operation, and has spent this minute's mark_tag budget.
        with db.write() as session:
            tag = session.scalars(select(Tag).where(Tag.name == "活动")).one()
            ids = []
            for ext in exts:
                op = outbox.enqueue_tags(
                    session=session, staff_userid="alice", external_userid=ext, add=[tag]
                )
                assert op is not None
                ids.append(op.id)
            now = utcnow()
            claimed_until = now + timedelta(seconds=outbox.QUEUE.claim_seconds)
            session.execute(
                update(OutboxOperation)
                .where(OutboxOperation.id == ids[0])
                .values(status=OutboxStatus.IN_FLIGHT, attempts=1, locked_until=claimed_until)
            )
            session.add(
                Lease(
                    name=SCHEDULER_LEASE,
                    owner=NORMAL,
                    expires_at=now + timedelta(seconds=LEASE_TTL),
                )
            )
        budget = SharedBudget(
            db, CORP_ID, per_minute=PER_MINUTE, per_hour=100 * PER_MINUTE, interactive_reserve=0
        )
        for _ in range(PER_MINUTE):
            budget.acquire(MARK_TAG)
        assert budget.used(MARK_TAG)["minute"]["bulk"] == PER_MINUTE

        # The ahead machine runs a worker and a scheduler, preloaded with libfaketime (not
        # its `faketime` wrapper, which would take the SIGTERM itself). libfaketime 0.9.10
        # fails Python's time.sleep (clock_nanosleep on the monotonic clock: EINVAL, or the
        # offset slept when it fakes that clock too): these two processes wait on events
        # only, where gunicorn's master sleeps.
        env = dict(os.environ) | {
            "LD_PRELOAD": lib,
            "FAKETIME": f"+{AHEAD:.0f}",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }
        wrap: tuple[str, ...] = ()
        log = tmp_path / "ahead-worker.log"
        slog = tmp_path / "ahead-scheduler.log"
        ahead = [
            start(config, "worker", log=log, env=env, wrap=wrap),
            start(config, "scheduler", log=slog, env=env, wrap=wrap),
        ]
        try:
            wait_for(
                lambda: "it runs the jobs now" in slog.read_text(errors="replace"),
                timeout=60,
                what="the ahead scheduler to try the lease",
            )
            # The ahead worker claimed the two free operations (and waits for budget)...
            wait_for(
                lambda: all(_ops(db)[i].status == OutboxStatus.IN_FLIGHT for i in ids[1:]),
                timeout=60,
                what="the ahead worker to claim the free operations",
            )
            # ...and lived for several more beats and polls (its heartbeat, by the
            # database's clock, moved on by 6 s) with the claimed one in view.
            first = _beat_expiry(db)
            assert first is not None
            wait_for(
                lambda: (_beat_expiry(db) or 0) >= first + 6,
                timeout=60,
                what="six seconds of the ahead worker's heartbeat",
            )
            text = slog.read_text(errors="replace")
            assert "it runs the jobs now: False" in text, text[-3000:]
            ops = _ops(db)
            held = ops[ids[0]]
            assert (held.status, held.attempts) == (OutboxStatus.IN_FLIGHT, 1)  # not stolen
            assert held.locked_until == claimed_until
            with db.read() as session:
                owner = session.scalar(select(Lease.owner).where(Lease.name == SCHEDULER_LEASE))
            assert owner == NORMAL  # one scheduler
            assert simulator.calls.get(MARK_TAG, 0) == 0  # the minute's budget is spent
        finally:
            codes = []
            for proc in ahead:
                proc.send_signal(signal.SIGTERM)
            for proc in ahead:
                try:
                    codes.append(proc.wait(timeout=60))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    raise
        assert codes == [0, 0], log.read_text(errors="replace")[-3000:]
        # It stopped while waiting for budget: its claims went back untried, due now.
        ops = _ops(db)
        assert [(ops[i].status, ops[i].attempts) for i in ids[1:]] == [("pending", 0)] * 2
        assert ops[ids[0]].attempts == 1
    finally:
        db.dispose()

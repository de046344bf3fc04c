"""An outbox claim whose process died on this host is taken over at once, not at its deadline.

A worker claims operations in batches of 20, each claim good for CLAIM_SECONDS. After a
kill -9 the process that starts next on the same host (and PID namespace) sees the dead
process's heartbeat, drops it with its first beat and takes the claims with its next
batch; a live process's claims, and those of a process on another host, wait for their
deadline as before.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from bot import heartbeat
from bot.db import Database
from bot.db.models import Lease, OutboxOperation, Tag
from bot.db.types import utcnow
from bot.states import OutboxStatus
from bot.tags import outbox
from tests.support.processes import serve, served_config, wait_healthy
from tests.support.waiting import wait_for
from wecom_sim import Simulator

MARK_TAG = "externalcontact/mark_tag"
RELATIONS = 120


def _dead_heartbeat_id() -> str:
    """The heartbeat id of a process of this host that has exited."""
    done = subprocess.run(
        [sys.executable, "-c", "from bot.heartbeat import Heartbeat; print(Heartbeat().id)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _beating(db: Database, name: str, expires: datetime) -> None:
    """Write a heartbeat row as its process's last beat left it."""
    with db.write() as s:
        s.execute(insert(Lease).values(name=name, owner=name, expires_at=expires))


def _held_by(db: Database, owner: str, n: int = 3) -> list[int]:
    """Queue `n` operations and leave them claimed by `owner` until a minute from now."""
    ids = []
    with db.write() as s:
        for i in range(n):
            op = OutboxOperation(
                kind=outbox.MARK_TAG,
                staff_userid="alice",
                external_userid=f"wmTake{owner[-4:]}{i}",
                payload={},
                status=OutboxStatus.PENDING,
                attempts=0,
                next_attempt_at=utcnow(),
            )
            s.add(op)
            s.flush()
            ids.append(op.id)
        s.execute(
            update(OutboxOperation)
            .where(OutboxOperation.id.in_(ids))
            .values(
                status=OutboxStatus.IN_FLIGHT,
                attempts=1,
                owner=owner,
                locked_until=utcnow() + timedelta(seconds=outbox.CLAIM_SECONDS),
            )
        )
    return ids


def _claim(db: Database, owner: str | None, now: datetime | None = None) -> list[int]:
    with db.write() as s:
        return sorted(op.id for op in outbox.claim(s, limit=20, now=now, owner=owner))


def test_a_dead_process_s_claims_go_to_the_next_one_at_its_first_beat(db_url: str) -> None:
    db = Database(db_url)
    dead = _dead_heartbeat_id()
    _beating(db, dead, utcnow() - timedelta(seconds=1))
    ids = _held_by(db, dead)
    me = heartbeat.Heartbeat()
    # Before this process has beaten, the dead one's row stands: its claims are respected.
    assert _claim(db, me.id) == []
    heartbeat.beat(db=db, heartbeat=me)
    assert _claim(db, me.id) == ids
    with db.read() as s:
        rows = list(s.execute(select(OutboxOperation.owner, OutboxOperation.attempts)))
        assert {(o, a) for o, a in rows} == {(me.id, 2)}
        assert s.scalar(select(Lease.name).where(Lease.name == dead)) is None
    db.dispose()


def test_claims_of_a_live_process_or_one_elsewhere_wait_for_their_deadline(db_url: str) -> None:
    db = Database(db_url)
    me = heartbeat.Heartbeat()
    heartbeat.beat(db=db, heartbeat=me)
    alive = heartbeat.Heartbeat()  # this very process, under another id: alive
    prefix, pid, suffix, ns = _dead_heartbeat_id().rsplit(":", 3)
    # a process that exited, seen from another host or another container sharing our name
    elsewhere = f"beat:another-host:{pid}:{suffix}:{ns}"
    other_ns = f"{prefix}:{pid}:{suffix}:{ns}1"
    stale = utcnow() - timedelta(seconds=heartbeat.STALE_SECONDS * 3)
    held = {}
    for owner in (alive.id, elsewhere, other_ns):
        _beating(db, owner, stale)  # stale: only a deadline passing frees the claims
        held[owner] = _held_by(db, owner)
    heartbeat.beat(db=db, heartbeat=me)
    assert _claim(db, me.id) == []
    with db.read() as s:
        rows = set(s.scalars(select(Lease.name).where(Lease.name.startswith(heartbeat.PREFIX))))
    assert {alive.id, elsewhere, other_ns} <= rows
    later = utcnow() + timedelta(seconds=outbox.CLAIM_SECONDS + 1)
    assert _claim(db, me.id, now=later) == sorted(i for ids in held.values() for i in ids)
    db.dispose()


def test_a_claim_naming_no_process_waits_for_its_deadline(db_url: str) -> None:
    # `tagbot push` and workers whose heartbeat has not beaten yet claim with no owner.
    db = Database(db_url)
    with db.write() as s:
        s.add(
            OutboxOperation(
                kind=outbox.MARK_TAG,
                staff_userid="alice",
                external_userid="wmNobody",
                payload={},
                status=OutboxStatus.PENDING,
                attempts=0,
                next_attempt_at=utcnow(),
            )
        )
    taken = _claim(db, None)
    assert len(taken) == 1
    me = heartbeat.Heartbeat()
    heartbeat.beat(db=db, heartbeat=me)
    assert _claim(db, me.id) == []
    db.dispose()


def _ops(db_url: str) -> list[OutboxOperation]:
    db = Database(db_url)
    try:
        with db.read() as session:
            return list(session.scalars(select(OutboxOperation).order_by(OutboxOperation.id)))
    finally:
        db.dispose()


def _queue_push(db_url: str, simulator: Simulator, n: int) -> list[str]:
    exts = [simulator.add_relation("alice") for _ in range(n)]
    db = Database(db_url)
    try:
        with db.write() as session:
            tag = session.scalars(select(Tag).where(Tag.name == "活动")).one()
            for ext in exts:
                outbox.enqueue_tags(
                    session=session,
                    staff_userid="alice",
                    external_userid=ext,
                    add=[tag],
                    priority=0,
                )
    finally:
        db.dispose()
    return exts


@pytest.mark.slow
def test_kill_9_mid_push_the_next_process_takes_the_claims_before_their_deadline(
    tmp_path: Path, db_url: str, simulator: Simulator
) -> None:
    config, port, _state = served_config(tmp_path, db_url, simulator)
    exts = _queue_push(db_url, simulator, RELATIONS)
    # WeCom slowed down for the first calls: the kill lands while batches of 20 are claimed.
    simulator.inject_stall(MARK_TAG, 1.0, count=12)
    first = serve(config, log=tmp_path / "serve1.log")
    try:
        wait_healthy(port)
        wait_for(
            lambda: sum(op.status == OutboxStatus.DONE for op in _ops(db_url)) >= 2,
            timeout=60,
            what="the push under way",
        )
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # no cleanup: heartbeat and claims stay
        first.wait(timeout=10)
    # A call in hand at the kill still lands in WeCom (its answer died with the process):
    # wait for the simulator to answer every call it received.
    wait_for(
        lambda: (
            simulator.calls.get(MARK_TAG, 0)
            == sum(
                n for k, n in simulator.calls.items() if isinstance(k, tuple) and k[0] == MARK_TAG
            )
        ),
        timeout=30,
        what="the stalled calls answered",
    )
    ops = _ops(db_url)
    held = {op.id: op for op in ops if op.status == OutboxStatus.IN_FLIGHT}
    assert held, "the kill came when no claim was held"
    dead_owner = {op.owner for op in held.values()}
    assert len(dead_owner) == 1
    assert None not in dead_owner
    done_before = sum(op.status == OutboxStatus.DONE for op in ops)
    # Calls WeCom applied whose result the dead process never recorded.
    in_hand = simulator.calls.get((MARK_TAG, 0), 0) - done_before
    assert 0 <= in_hand <= 2  # at most one per outbox worker thread

    second = serve(config, log=tmp_path / "serve2.log")
    try:
        wait_for(
            lambda: {op.status for op in _ops(db_url)} == {OutboxStatus.DONE},
            timeout=120,
            what="the rest of the push",
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    after = {op.id: op for op in _ops(db_url)}
    for op_id, was in held.items():
        now = after[op_id]
        assert now.owner not in dead_owner
        assert now.attempts == was.attempts + 1
        # Taken (and done) before the dead process's claim would have expired, by the
        # database's clock (the workers' utcnow follows it).
        assert was.locked_until is not None
        assert now.done_at is not None
        assert now.done_at < was.locked_until, (op_id, now.done_at, was.locked_until)
    assert all(simulator.relation_tags("alice", ext) for ext in exts)
    # Each operation reached WeCom once, plus the calls in hand at the kill: nothing twice.
    assert simulator.calls.get((MARK_TAG, 0)) == RELATIONS + in_hand
    assert max(op.attempts for op in after.values()) <= 2

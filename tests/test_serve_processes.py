"""`tagbot serve --workers N`: several full processes share the work, each event once."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot import leases
from bot.callbacks import inbox
from bot.db import Database
from bot.db.models import InboxEvent, Lease
from bot.db.types import utcnow
from bot.wecom.events import parse_event
from tests.support.processes import inbox_statuses, serve, served_config, wait_healthy
from tests.support.waiting import wait_for
from wecom_sim import Simulator

pytestmark = pytest.mark.slow  # real `tagbot serve` processes


def test_two_processes_process_every_scan_once(
    tmp_path: Path, db_url: str, simulator: Simulator
) -> None:
    config, port, state = served_config(tmp_path, db_url, simulator)
    proc = serve(config, "--workers", "2")
    try:
        wait_healthy(port)
        simulator.callback_url = f"http://127.0.0.1:{port}/wecom/callback"
        with ThreadPoolExecutor(8) as pool:
            scans = list(pool.map(lambda _: simulator.scan(state, duplicate=True), range(60)))
        assert all(s.callback_status == 200 for s in scans)
        wait_for(lambda: inbox_statuses(db_url) == ["done"] * 60, timeout=60, what="processing")
        wait_for(lambda: all(simulator.relation_tags("alice", s.external_userid) for s in scans))
        calls = simulator.calls
        assert calls.get("externalcontact/send_welcome_msg") == 60
        assert calls.get(("externalcontact/send_welcome_msg", 41051), 0) == 0
        assert calls.get("externalcontact/mark_tag") == 60
        assert calls.get("externalcontact/get") == 60
        assert {w.welcome_code for w in simulator.welcomes if w.sent_at} == {
            s.welcome_code for s in scans
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


_ALIVE = 3600.0  # a heartbeat that stays fresh however slow the machine


def _xml(simulator: Simulator, n: int) -> str:
    return simulator.event_xml(
        "change_external_contact",
        "add_external_contact",
        {"UserID": "alice", "ExternalUserID": f"wmHandoff{n:04d}", "State": "s"},
    )


def test_a_handed_off_event_waits_for_its_live_owner_then_anyone_takes_it(
    db_url: str, simulator: Simulator
) -> None:
    db = Database(db_url)
    try:
        with db.write() as session:
            leases.try_acquire("beat:owner", "beat:owner", _ALIVE, session=session)
        with db.write_driver() as txn:
            mine = inbox.store(parse_event(_xml(simulator, 1)), "x", txn=txn, owner="beat:owner")
            shared = inbox.store(parse_event(_xml(simulator, 2)), "y", txn=txn)
        assert mine is not None
        assert shared is not None
        with db.write() as session:
            # Other processes see only the event nobody handed off.
            assert [c.id for c in inbox.claim(session=session, owner="beat:other", limit=10)] == [
                shared
            ]
        with db.write() as session:
            # The process that acknowledged it takes it by id at once.
            claimed = inbox.claim(session=session, owner="beat:owner", ids=[mine, shared])
            assert [c.id for c in claimed] == [mine]
        with db.write() as session:
            # Claimed by a live process: others leave it, however long it takes.
            assert inbox.claim(session=session, owner="beat:other", limit=10) == []
            # Its heartbeat stops (kill -9): the event is due for others at once.
            session.execute(
                update(Lease)
                .where(Lease.name == "beat:owner")
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
        with db.write() as session:
            assert [c.id for c in inbox.claim(session=session, owner="beat:other", limit=10)] == [
                mine
            ]
            assert session.scalar(select(InboxEvent.owner).where(InboxEvent.id == mine)) == (
                "beat:other"
            )
    finally:
        db.dispose()


def test_a_redelivery_of_a_dead_process_event_takes_it_over_and_wakes_it(
    db_url: str, simulator: Simulator
) -> None:
    db = Database(db_url)
    event = parse_event(_xml(simulator, 3))
    # Built once: CreateTime is part of the dedup key, so building it twice across a
    # second boundary would make a different event, not a re-delivery.
    slow = parse_event(_xml(simulator, 4))
    try:
        with db.write() as session:
            for beat in ("beat:live", "beat:new"):
                leases.try_acquire(beat, beat, _ALIVE, session=session)
        with db.write_driver() as txn:
            first = inbox.store(event, "x", txn=txn, owner="beat:dead")  # no heartbeat row
            live = inbox.store(slow, "y", txn=txn, owner="beat:live")
        assert first is not None
        assert live is not None
        with db.write_driver() as txn:
            # Re-delivered to another process: it takes the dead process's event over...
            assert inbox.store(event, "x", txn=txn, owner="beat:new") == first
            # ...but never a live process's one: that one is merely slow.
            assert inbox.store(slow, "y", txn=txn, owner="beat:new") is None
        with db.write() as session:
            rows = {r.id: r.owner for r in session.execute(select(InboxEvent.id, InboxEvent.owner))}
            assert rows == {first: "beat:new", live: "beat:live"}
            assert [c.id for c in inbox.claim(session=session, owner="beat:new", ids=[first])] == [
                first
            ]
        with db.write_driver() as txn:
            # A re-delivery of an event being processed by a live process stays a duplicate.
            assert inbox.store(event, "x", txn=txn, owner="beat:other") is None
        with db.read() as session:
            dups = session.scalar(select(InboxEvent.duplicates).where(InboxEvent.id == first))
            assert dups == 2
    finally:
        db.dispose()

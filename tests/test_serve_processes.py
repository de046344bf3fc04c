"""`tagbot serve --workers N`: several full processes share the work, each event once."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot.callbacks import inbox
from bot.db import Database
from bot.db.models import InboxEvent
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


def _xml(simulator: Simulator, n: int) -> str:
    return simulator.event_xml(
        "change_external_contact",
        "add_external_contact",
        {"UserID": "alice", "ExternalUserID": f"wmHandoff{n:04d}", "State": "s"},
    )


def test_a_handed_off_event_waits_for_its_process_then_anyone_takes_it(
    db_url: str, simulator: Simulator
) -> None:
    db = Database(db_url)
    try:
        with db.write() as session:
            mine = inbox.store(session, parse_event(_xml(simulator, 1)), "x", hand_off=True)
            shared = inbox.store(session, parse_event(_xml(simulator, 2)), "y")
        assert mine is not None
        assert shared is not None
        with db.write() as session:
            # Other processes see only the event nobody handed off.
            assert [c.id for c in inbox.claim(session, limit=10)] == [shared]
        with db.write() as session:
            # The process that acknowledged it takes it by id at once.
            assert [c.id for c in inbox.claim(session, ids=[mine, shared])] == [mine]
        with db.write() as session:
            # Put both back as if never claimed: the hand-off window still hides `mine`.
            session.execute(update(InboxEvent).values(status=inbox.PENDING))
            assert [c.id for c in inbox.claim(session, limit=10)] == [shared]
        with db.write() as session:
            # If that process dies, the event falls due once the hand-off window has passed.
            received = session.scalar(select(InboxEvent.received_at).where(InboxEvent.id == mine))
            assert received is not None
            due = session.scalar(select(InboxEvent.next_attempt_at).where(InboxEvent.id == mine))
            assert due == received + timedelta(seconds=inbox.HANDOFF_SECONDS)
            session.execute(
                update(InboxEvent)
                .where(InboxEvent.id == mine)
                .values(next_attempt_at=received - timedelta(seconds=1))
            )
        with db.write() as session:
            assert [c.id for c in inbox.claim(session, limit=10)] == [mine]
    finally:
        db.dispose()

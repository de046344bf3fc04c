"""The work one scan costs on the hot path, counted: SQL statements, commits, writes, WeCom calls.

A guard without a clock: the real app answers the simulator's callback over HTTP, then the
real welcome-lane and inbox-worker steps run here, one at a time, while every statement
the engine sends is recorded. A change that adds a statement, a commit, a write
transaction or a WeCom call to a scan fails here; bench/callback_load.py says what the
work costs in time.

Time is held still where it decides whether work happens: the budget's clock (a lease of
reserved calls lasts a slot), the channel cache's clock (entries live CONTEXT_TTL) and
the inbox's poll for older due events (every POLL_SECONDS).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event

from bot.channels import live_codes
from bot.tags.catalogue import TagPath
from bot.wecom.client import WeComClient
from jobs.inbox import INBOX_WORKER
from jobs.welcome import WELCOME_LANE
from tests.support.configs import settings_for
from tests.support.live import LiveServer
from wecom_sim import Simulator


@dataclass
class Work:
    """What the engine and WeCom saw during one phase of a scan."""

    statements: list[str] = field(default_factory=list)
    commits: int = 0
    writes: int = 0
    calls: dict[str, int] = field(default_factory=dict)

    def counts(self) -> tuple[int, int, int, int]:
        """Return (statements, commits, write transactions, WeCom calls)."""
        return len(self.statements), self.commits, self.writes, sum(self.calls.values())


class Recorder:
    """Record each statement and commit on an engine under the phase being run."""

    def __init__(self, server: LiveServer, sim: Simulator) -> None:
        self.rt = server.runtime
        self.sim = sim
        self.phase: Work | None = None
        self._lock = threading.Lock()

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        with self._lock:
            if self.phase is not None:
                self.phase.statements.append(" ".join(statement.split())[:90])

    def _commit(self, _conn: Any) -> None:
        with self._lock:
            if self.phase is not None:
                self.phase.commits += 1

    def attach(self) -> None:
        event.listen(self.rt.db.engine, "before_cursor_execute", self._statement)
        event.listen(self.rt.db.engine, "commit", self._commit)

    def detach(self) -> None:
        event.remove(self.rt.db.engine, "before_cursor_execute", self._statement)
        event.remove(self.rt.db.engine, "commit", self._commit)

    def run(self, fn: Any) -> tuple[Work, Any]:
        """Run fn() as one phase; return what it cost and its result."""
        work = Work()
        self.sim.reset_counters()
        writes = self.rt.db.writes
        with self._lock:
            self.phase = work
        try:
            result = fn()
        finally:
            with self._lock:
                self.phase = None
        work.writes = self.rt.db.writes - writes
        work.calls = {k: v for k, v in self.sim.calls.items() if isinstance(k, str)}
        return work, result


@pytest.fixture
def still_server(db_url: str, simulator: Simulator) -> Iterator[LiveServer]:
    """The app over HTTP without background threads, its clocks held still."""
    server = LiveServer(settings_for(db_url, simulator), jobs=False).start()
    simulator.callback_url = server.url + "/wecom/callback"
    rt = server.runtime
    frozen = time.time()
    s = rt.settings
    rt.__dict__["wecom"] = WeComClient(
        s.wecom, s.limits, db=rt.db, clock=lambda: frozen, stop=rt.stopping
    )
    rt.context_cache.clock = lambda: 0.0
    rt.handoff._next_poll = math.inf  # only the hand-off: no poll for older events
    yield server
    server.stop()


def test_one_scan_costs_a_fixed_number_of_statements_commits_writes_and_calls(
    still_server: LiveServer, simulator: Simulator
) -> None:
    for userid in ("alice", "bob"):
        simulator.add_staff(userid, userid.title())
    rt = still_server.runtime
    channel = live_codes.create(
        live_codes.ChannelSpec(
            name="直播",
            staff=("alice", "bob"),
            tags=(TagPath("来源", "直播"), TagPath("批次", "压测")),
            welcome="你好 {name}，我是{staff}",
        ),
        db=rt.db,
        wecom=rt.wecom,
    )
    # As the worker threads do when they start: the request hands over to them.
    rt.handoff.active = True
    rt.welcome_lane.active = True
    recorder = Recorder(still_server, simulator)

    def scan() -> list[Work]:
        ack, result = recorder.run(lambda: simulator.scan(channel.state))
        assert result.callback_status == 200
        lane, sent = recorder.run(lambda: WELCOME_LANE.step(rt))
        worker, processed = recorder.run(lambda: INBOX_WORKER.step(rt))
        # Another inbox thread woken by the same ack finds the hand-off taken: no claim.
        idle, nothing = recorder.run(lambda: INBOX_WORKER.step(rt))
        assert (sent, processed, nothing) == (1, 1, 0)
        assert idle.counts() == (0, 0, 0, 0), idle.statements
        return [ack, lane, worker]

    recorder.attach()
    try:
        # Two scans warm the caches and grow the budget's leases (1 call, then 2) to
        # where the third finds a reserved call left for each API.
        scan()
        scan()
        ack, lane, worker = scan()
    finally:
        recorder.detach()

    sqlite = rt.db.is_sqlite
    detail = {"ack": ack.statements, "lane": lane.statements, "worker": worker.statements}
    # The ack: one write storing the event and claiming it for this process's workers
    # (SQLite: BEGIN IMMEDIATE, INSERT … RETURNING; PostgreSQL: the relation's lock,
    # INSERT … RETURNING, NOTIFY), committed once.
    assert ack.counts() == ((2, 1, 1, 0) if sqlite else (3, 1, 1, 0)), detail
    # The welcome lane: no SQL at all (channel and staff name cached); fetch and send.
    assert lane.counts() == (0, 0, 0, 2), detail
    assert lane.calls == {"externalcontact/get": 1, "externalcontact/send_welcome_msg": 1}
    # The inbox worker: mark_tag; a write on the driver (bot/customers/scan_store.py)
    # inserting the customer, looking up the member, channel and orphan rows in one SELECT,
    # inserting the relation and its tags, marking the customer touched, counting the
    # scan, finishing the event. The ack claimed it: no claim write (was 12, 2, 2, 1
    # before session 8 took the claim transaction off the scan on SQLite, session 10 on
    # PostgreSQL; 10 statements through a session until session 10).
    assert worker.counts() == ((8, 1, 1, 1) if sqlite else (7, 1, 1, 1)), detail
    assert worker.calls == {"externalcontact/mark_tag": 1}

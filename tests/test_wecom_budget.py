"""The corp-wide WeCom budget: shared by processes, per minute and per hour, with two lanes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests
from prometheus_client import REGISTRY
from sqlalchemy import event, func, select

from bot import metrics
from bot.db import Database
from bot.db.models import WeComBudget, WeComBudgetSlot
from bot.runtime import Runtime
from bot.tags import catalogue, outbox
from bot.wecom import budget as wecom
from bot.wecom import metrics as wecom_metrics
from bot.wecom.budget import BULK, INTERACTIVE, SharedBudget
from tests.support.configs import settings_for
from tests.support.corp import CORP_ID
from tests.support.wecom_clients import FOLLOW, make_client
from wecom_sim import Simulator

ROOT = Path(__file__).resolve().parent.parent


class FakeTime:
    """A clock that only moves when the budget sleeps, so windows pass without waiting."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def budget_on(db: Database, t: FakeTime, **limits: float) -> SharedBudget:
    options = {"per_minute": 10, "per_hour": 1000, "interactive_reserve": 0.0, **limits}
    return SharedBudget(
        db,
        CORP_ID,
        per_minute=int(options["per_minute"]),
        per_hour=int(options["per_hour"]),
        interactive_reserve=options["interactive_reserve"],
        clock=t.clock,
        sleep=t.sleep,
    )


def spend(budget: SharedBudget, t: FakeTime, n: int, lane: str = BULK) -> list[float]:
    """Take `n` calls one by one; return the clock reading each was granted at."""
    stamps = []
    for _ in range(n):
        budget.acquire("a", INTERACTIVE if lane == INTERACTIVE else BULK)
        stamps.append(t.now)
    return stamps


def test_minute_window_rolls_over_and_no_minute_holds_more(db: Database) -> None:
    t = FakeTime(1_000_030.5)  # mid-slot and mid-minute: WeCom's minute may start anywhere
    stamps = spend(budget_on(db, t), t, 30)
    assert stamps[:10] == [1_000_030.5] * 10  # a burst up to the budget goes at once
    # Booked in slot 1_000_030 (1 s slots); a call may be made up to one slot later, so
    # the slot leaves the window after 60 + 2 slots: exactly then, not before.
    assert stamps[10] == 1_000_092.0
    assert stamps[20] == 1_000_154.0
    assert all(stamps[i + 10] - stamps[i] >= 60 for i in range(20))
    with db.read() as session:  # slots that left the window are dropped
        rows = session.scalar(select(func.count()).select_from(WeComBudgetSlot))
    assert rows == 4  # the minute's current slot and the hour's three


def test_hour_window_rolls_over_and_no_hour_holds_more(db: Database) -> None:
    start = 3600 * 500 + 1234.5
    t = FakeTime(start)
    stamps = spend(budget_on(db, t, per_minute=10, per_hour=25), t, 40)
    assert stamps[9] == start
    assert stamps[10] == 3600 * 500 + 1296.0
    assert stamps[20] == 3600 * 500 + 1358.0  # the minute allows 10 more, the hour only 5
    assert stamps[24] == stamps[20]
    # The hour's 1-minute slot of `start` leaves after 62 slots: at minute 20 + 62.
    assert stamps[25] == (start // 60 + 62) * 60
    assert all(stamps[i + 25] - stamps[i] >= 3600 for i in range(15))


def test_bulk_leaves_the_reserve_to_interactive_calls(db: Database) -> None:
    t = FakeTime(2_000_000.0)
    budget = budget_on(db, t, per_minute=10, interactive_reserve=0.2)
    assert spend(budget, t, 8) == [2_000_000.0] * 8  # bulk may have 8 of 10
    assert spend(budget, t, 2, INTERACTIVE) == [2_000_000.0] * 2  # the reserve is intact
    assert t.slept == []
    assert spend(budget, t, 1, INTERACTIVE) == [2_000_062.0]  # now the budget is spent
    assert budget.used("a")["minute"][BULK] == 0  # the older calls left the window


def test_bulk_waits_while_interactive_calls_fill_the_budget(db: Database) -> None:
    t = FakeTime(2_000_000.0)
    budget = budget_on(db, t, per_minute=10, interactive_reserve=0.5)
    spend(budget, t, 3, INTERACTIVE)
    assert spend(budget, t, 2) == [2_000_000.0] * 2  # 3 + 2 fill bulk's 5
    assert spend(budget, t, 1) == [2_000_062.0]


def test_a_45009_pauses_the_api_for_every_process(db: Database) -> None:
    t = FakeTime(3_000_000.0)
    other = Database(db.url)  # another process's engine on the same database
    try:
        first, second = budget_on(db, t), budget_on(other, t)
        first.acquire("a")
        first.pause("a", 30.0)
        assert second.acquire("a") == 30.0
        assert second.acquire("b") == 0.0  # other APIs go on
        with db.read() as session:
            row = session.get(WeComBudget, (CORP_ID, "a"))
        assert row is not None
        assert row.paused_until == 3_000_030.0
    finally:
        other.dispose()


def test_calls_made_inside_a_write_transaction_are_booked_after_it(db: Database) -> None:
    t = FakeTime(4_000_000.0)
    budget = budget_on(db, t, per_minute=5)

    with db.write():
        for _ in range(2):
            budget.acquire("a")  # on SQLite this must not wait for our own lock
    assert spend(budget, t, 3) == [4_000_000.0] * 3
    assert spend(budget, t, 1) == [4_000_062.0]  # the 2 owed calls counted


def test_threads_of_two_processes_share_one_sliding_window(db: Database) -> None:
    other = Database(db.url)
    budgets = [
        SharedBudget(
            db, CORP_ID, per_minute=20, per_hour=10_000, interactive_reserve=0, window=1.0
        ),
        SharedBudget(
            other, CORP_ID, per_minute=20, per_hour=10_000, interactive_reserve=0, window=1.0
        ),
    ]
    stamps: list[float] = []
    lock = threading.Lock()

    def work(budget: SharedBudget) -> None:
        for _ in range(10):
            budget.acquire("x")
            with lock:
                stamps.append(time.time())

    threads = [threading.Thread(target=work, args=(b,)) for b in budgets for _ in range(3)]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        other.dispose()
    stamps.sort()
    assert len(stamps) == 60
    # 60 calls at 20 per (shortened) minute: never 21 inside one window.
    assert all(stamps[i + 20] - stamps[i] >= 0.95 for i in range(40))


_PROCESS = textwrap.dedent(
    """
    import sys, time
    from bot.config import settings_from_mapping
    from bot.db import Database
    from bot.wecom.client import WeComClient
    from bot.wecom.budget import SharedBudget
    from tests.support.corp import base_config

    url, api_base, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])

    class Spent(Exception):
        pass

    def sleep(seconds):
        if seconds > 5:  # waiting for the hour to pass: this process is done
            raise Spent
        time.sleep(seconds)

    settings = settings_from_mapping(base_config(url, api_base=api_base), environ={})
    db = Database(url)
    budget = SharedBudget(
        db, settings.wecom.corp_id, per_minute=1000, per_hour=40,
        interactive_reserve=0, batch=8, sleep=sleep,
    )
    client = WeComClient(settings.wecom, settings.limits, db=db, budget=budget)
    client.get_access_token()
    time.sleep(max(0.0, start_at - time.time()))
    made = 0
    try:
        while True:
            client.get_follow_user_list()
            made += 1
    except Spent:
        pass
    print(made)
    """
)


def test_two_processes_never_exceed_the_hourly_budget_together(
    db: Database, simulator: Simulator
) -> None:
    simulator.add_staff("u1", "张三")
    answer = requests.put(
        simulator.url + "/control/rate_limit", json={"per_hour": 40}, timeout=5
    ).json()
    assert answer == {"per_minute": 10000, "per_hour": 40}
    start_at = time.time() + 4.0  # both start together, after their imports
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS, db.url, simulator.api_base, str(start_at)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    made = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        made.append(int(out.strip()))
    assert sum(made) == 40
    assert simulator.calls[(FOLLOW, 0)] == 40
    assert simulator.calls.get((FOLLOW, 45009), 0) == 0


def test_scan_calls_go_through_while_a_bulk_loop_saturates_its_share(
    db: Database, simulator: Simulator
) -> None:
    simulator.add_staff("u1", "张三")
    ext = simulator.add_relation("u1", name="客户")
    # A 3 s "minute" of 20 calls, 5 of them reserved for interactive calls.
    client = make_client(
        db, simulator, calls_per_minute=20, interactive_reserve=0.25, rate_window=3.0
    )
    client.get_access_token()
    events: list[str] = []
    stop = threading.Event()

    def bulk_loop() -> None:
        with wecom.bulk():
            while not stop.is_set():
                client.get_external_contact(ext)
                events.append(BULK)

    loop = threading.Thread(target=bulk_loop)
    loop.start()
    try:
        deadline = time.monotonic() + 30
        while events.count(BULK) < 15 and time.monotonic() < deadline:
            time.sleep(0.01)
        with wecom.interactive():
            for _ in range(5):
                client.get_external_contact(ext)
                events.append(INTERACTIVE)
    finally:
        stop.set()
        loop.join()
    # Bulk took its 15 and waited; all 5 interactive calls went before its 16th.
    assert events[:20] == [BULK] * 15 + [INTERACTIVE] * 5
    assert simulator.calls.get(("externalcontact/get", 45009), 0) == 0


def test_outbox_sends_a_scans_tags_first_and_in_the_interactive_lane(
    db_url: str, simulator: Simulator
) -> None:
    simulator.add_staff("alice", "Alice")
    rt = Runtime(settings_for(db_url, simulator))
    try:
        paths = [catalogue.TagPath.parse("兴趣/护肤")]
        catalogue.ensure(db=rt.db, wecom=rt.wecom, paths=paths)
        exts = [simulator.add_relation("alice", name=f"客户{i}") for i in range(3)]
        with rt.db.read() as session:
            tag = catalogue.find(session, paths[0])
        assert tag is not None
        with rt.db.write() as session:
            for ext in exts[:2]:  # a tier push
                outbox.enqueue_tags(
                    session=session,
                    staff_userid="alice",
                    external_userid=ext,
                    add=[tag],
                    priority=0,
                )
            outbox.enqueue_tags(  # a scan, queued last
                session=session,
                staff_userid="alice",
                external_userid=exts[2],
                add=[tag],
            )
            merged = outbox.enqueue_tags(  # a scan's change joins a pending bulk one
                session=session,
                staff_userid="alice",
                external_userid=exts[1],
                add=[tag],
            )
            assert merged is not None
            assert merged.priority == outbox.INTERACTIVE
        with rt.db.write() as session:
            claimed = outbox.claim(session, limit=3)
        assert [(op.external_userid, op.interactive) for op in claimed] == [
            (exts[1], True),
            (exts[2], True),
            (exts[0], False),
        ]

        metrics.register(wecom_metrics.METRICS)  # as a serving process does

        def reserved(lane: str) -> float:
            value = REGISTRY.get_sample_value(
                "tagbot_wecom_budget_reserved_total",
                {"api": "externalcontact/mark_tag", "lane": lane},
            )
            return value or 0.0

        before = {lane: reserved(lane) for lane in (INTERACTIVE, BULK)}
        assert outbox.perform(claimed[0], rt.wecom) is None
        assert reserved(INTERACTIVE) > before[INTERACTIVE]
        assert reserved(BULK) == before[BULK]
        assert outbox.perform(claimed[2], rt.wecom) is None
        assert reserved(BULK) > before[BULK]
    finally:
        rt.close()


@pytest.mark.parametrize(
    ("limits", "problem"),
    [
        ({"calls_per_minute": 8000, "calls_per_hour": 7000}, "at least calls_per_minute"),
        ({"calls_per_minute": 1, "interactive_reserve": 0.5}, "no share"),
        ({"calls_per_hour": 150_001}, "150000"),
        ({"interactive_reserve": 0.95}, "0.9"),
    ],
)
def test_bad_limits_are_refused_by_key(
    limits: dict[str, float], problem: str, tmp_path: Path
) -> None:
    from bot.config import settings_from_mapping
    from bot.errors import ConfigError
    from tests.support.corp import base_config

    config = base_config(f"sqlite:///{tmp_path}/x.db")
    config["limits"] = limits
    with pytest.raises(ConfigError) as err:
        settings_from_mapping(config, environ={})
    assert "limits" in str(err.value)
    assert problem in str(err.value)


def test_simulator_rate_limits_are_set_per_minute_and_per_hour(simulator: Simulator) -> None:
    simulator.add_staff("u1", "张三")
    control = simulator.url + "/control/rate_limit"
    bad = requests.put(control, json={"per_minute": -1}, timeout=5)
    assert bad.status_code == 400
    assert "whole numbers" in bad.json()["error"]
    assert requests.put(control, json={"per_hour": 2}, timeout=5).json() == {
        "per_minute": 10000,
        "per_hour": 2,
    }
    token = requests.get(
        simulator.api_base + "gettoken",
        params={"corpid": simulator.corp_id, "corpsecret": simulator.state.secret},
        timeout=5,
    ).json()["access_token"]
    codes = [
        requests.get(simulator.api_base + FOLLOW, params={"access_token": token}, timeout=5).json()[
            "errcode"
        ]
        for _ in range(3)
    ]
    assert codes == [0, 0, 45009]  # the hour's limit, though the minute's allows more


def test_a_booking_costs_its_few_statements(db: Database) -> None:
    """Every WeCom call books through here: lock, sums, booking; a refund and a wait add little.

    Counted on the engine's statements (the bare driver announces its own too). Before
    session 10 a refund cost one UPDATE per window and a full budget one more query for
    when its oldest slot leaves.
    """
    t = FakeTime(1_000_030.5)
    budget = budget_on(db, t, per_minute=10)
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement.split()[0].upper())

    def booking(lane: str = BULK) -> list[str]:
        statements.clear()
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            spend(budget, t, 1, lane)
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
        return [s for s in statements if s != "BEGIN"]  # SQLite's BEGIN IMMEDIATE

    booking()  # creates the API's row and prunes: once per API and every 10 s
    # A lease of 1 call ran dry: the next books 2 in lock, sums, booking.
    assert booking() == ["SELECT", "SELECT", "INSERT"]
    # The lease expires with one call unused: it goes back in one UPDATE for both windows.
    t.now += 2
    assert booking() == ["SELECT", "UPDATE", "SELECT", "INSERT"]
    spend(budget, t, 10 - 3, BULK)  # the minute's budget is spent
    # A full budget: lock and sums say how long to wait (no query of their own); the retry
    # books when the first slot has left the window, pruning the slots gone (60 s later).
    assert booking() == ["SELECT", "SELECT", "SELECT", "DELETE", "SELECT", "INSERT"]
    assert t.slept[-1] == pytest.approx(1_000_092.0 - 1_000_032.5)

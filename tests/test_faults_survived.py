"""Faults, injected and survived: nothing lost, nothing twice (tests/support/history.py).

A real `tagbot serve` pushes a re-tier of seeded customers (one mark_tag per relation)
while customers scan a live code, and the simulator misbehaves throughout: a seeded 10 %
of calls answer -1 (system busy), some calls stall past the client's timeout (the answer
is lost, the effect is not), a 45009 window, every access token expiring mid-batch, and
the callbacks re-delivered and out of order. The history check then wants every desired
tag state reached, each welcome sent at most once (and every acknowledged scan welcomed),
every queue row finished, and no dead letter: every error here is retryable.

The last test crashes PostgreSQL itself (a throwaway cluster, tests/support/pg_cluster.py)
mid-push and mid-callback burst, and restarts it under the same running process.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import threading
import time
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.migrate import upgrade_to_head
from bot.runtime import Runtime
from bot.sync import run_sync
from bot.tags import push
from tests.support import parts, pg_cluster
from tests.support.channels import welcome_channel
from tests.support.configs import toml_text
from tests.support.corp import base_config
from tests.support.history import History, Scan, status_counts
from tests.support.processes import free_port, start, wait_healthy
from tests.support.tiers import assign_tiers
from tests.support.waiting import wait_for
from wecom_sim import Simulator

pytestmark = pytest.mark.slow  # real processes, a few hundred faults

SEED = 20
RELATIONS = 600  # the push: one mark_tag each
SCANS = 40  # half delivered at once (twice), half later, shuffled, each twice
TIERS = ("高价值", "中价值", "低价值")
MARK = "externalcontact/mark_tag"
WELCOME = "externalcontact/send_welcome_msg"
BUSY = -1  # 系统繁忙: retry


_VALUE_TOML = """
[[tiering.dimensions]]
name = "value"
tag_group = "价值分层"
tiers = [
  { tag = "高价值", when = "spend_365d >= 5000" },
  { tag = "中价值", when = "spend_365d >= 1000" },
  { tag = "低价值", when = "orders_total >= 1" },
]
"""  # tests.support.tiers.VALUE, as an operator writes it


def _config(tmp_path: Path, db_url: str, simulator: Simulator) -> tuple[Path, int, Runtime]:
    port = free_port()
    cfg = base_config(db_url, api_base=simulator.api_base)
    cfg["server"]["port"] = port
    cfg["app"] = {"log_level": "WARNING"}
    text = toml_text(cfg) + _VALUE_TOML
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    return config, port, Runtime(settings_from_mapping(tomllib.loads(text), environ={}))


def _seed_push(rt: Runtime, simulator: Simulator, history: History, rng: random.Random) -> int:
    """Seed RELATIONS customers of alice, tier them, queue the push; record the tags wanted."""
    exts = [simulator.add_relation("alice", f"wmFault{i:05d}") for i in range(RELATIONS)]
    run_sync(db=rt.db, wecom=rt.wecom)
    tiers = {ext: rng.choice(TIERS) for ext in exts}
    assign_tiers(rt, {ext: {"value": tier} for ext, tier in tiers.items()})
    queued = push.enqueue_tier_push(**parts.tier_push(rt)).diff.new_operations
    group = simulator.tag_catalogue()["价值分层"]
    for ext, tier in tiers.items():
        history.desire("alice", ext, [group[tier]])
    return queued


def _scan_storm(
    simulator: Simulator,
    state: str,
    history: History,
    rng: random.Random,
    channel_tag: str,
    between: Callable[[], None],
    *,
    times: int = 2,
) -> None:
    """SCANS scans in quarters: half delivered twice at once, half held back to the end
    of their quarter, then delivered shuffled, each twice; `between` runs after each
    quarter (a kill, or nothing). `times=1` delivers each event once: then a 200 alone
    must mean the event was stored. Held back a quarter, not longer: WeCom posts at once
    and retries within seconds, and a welcome code dies 20 s after the scan.
    """
    for _ in range(4):
        held: list[tuple[Scan, str]] = []
        for n in range(SCANS // 4):
            if n % 2 == 0:
                r = simulator.scan(state, duplicate=times > 1)
                acked = r.callback_status == 200
                history.scanned(Scan(r.userid, r.external_userid, r.welcome_code, acked))
                if acked:  # one not acknowledged is WeCom's to retry: not ours yet
                    history.desire(r.userid, r.external_userid, [channel_tag])
            else:
                r = simulator.scan(state, deliver=False)
                assert r.xml is not None
                held.append((Scan(r.userid, r.external_userid, r.welcome_code, False), r.xml))
        deliveries = [(scan, xml) for scan, xml in held for _ in range(times)]
        rng.shuffle(deliveries)  # out of order, each event twice
        answered: dict[str, bool] = {}
        for scan, xml in deliveries:
            ok = any(d.status == 200 for d in simulator.post_callback(xml))
            answered[scan.external_userid] = answered.get(scan.external_userid, False) or ok
        for scan, _ in held:
            acked = answered[scan.external_userid]
            history.scanned(Scan(scan.userid, scan.external_userid, scan.welcome_code, acked))
            if acked:
                history.desire(scan.userid, scan.external_userid, [channel_tag])
        between()


def _settle(check: Callable[[], list[str]], timeout: float) -> list[str]:
    """Poll the history check until it holds or `timeout` passes; return what is left."""
    deadline = time.monotonic() + timeout
    problems = check()
    while problems and time.monotonic() < deadline:
        time.sleep(1.0)
        problems = check()
    return problems


class Served:
    """`tagbot serve --workers 2` (callbacks, workers, scheduler), killed and restarted at will."""

    def __init__(self, config: Path, port: int, log_dir: Path) -> None:
        self.config, self.port, self.log_dir = config, port, log_dir
        self.starts = 0
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        self.starts += 1
        log = self.log_dir / f"serve-{self.starts}.log"
        proc = start(self.config, "serve", "--workers", "2", log=log)
        wait_healthy(self.port)
        return proc

    def kill_and_restart(self) -> None:
        """SIGKILL the whole process group (no cleanup at all), then start it again."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = self._start()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


class Terminator:
    """Drop the served process's PostgreSQL connections (pg_terminate_backend) at seeded
    moments, on a thread, until stopped; only connections with our application_name."""

    def __init__(self, db_url: str, name: str, rng: random.Random) -> None:
        self.db, self.name, self.rng = Database(db_url), name, rng
        self.stopping = threading.Event()
        self.dropped = 0
        self.first_pass = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # The first drop is at once (the push is under way when the storm starts): a storm
        # of 40 scans can end before the first seeded wait does, which dropped nothing.
        while True:
            with self.db.engine.begin() as conn:
                self.dropped += len(
                    conn.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE application_name = :name AND pid <> pg_backend_pid()"
                        ),
                        {"name": self.name},
                    ).all()
                )
            self.first_pass.set()
            if self.stopping.wait(self.rng.uniform(0.05, 0.5)):
                return

    def __enter__(self) -> Terminator:
        self.thread.start()
        self.first_pass.wait(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        self.db.dispose()


def _run(
    tmp_path: Path,
    db_url: str,
    simulator: Simulator,
    *,
    window: bool,
    kills: int,
    terminate: bool = False,
) -> tuple[History, Served]:
    """Seed and queue the push, misbehave, scan, kill `kills` times, drop the database
    connections throughout when `terminate`; settle and check."""
    rng = random.Random(SEED)
    history = History()
    simulator.add_staff("alice")
    app_name = f"tagbot_faults_{uuid.uuid4().hex[:8]}"
    served_url = f"{db_url}&application_name={app_name}" if terminate else db_url
    config, port, rt = _config(tmp_path, served_url, simulator)
    try:
        state = welcome_channel(rt)
        channel_tag = simulator.tag_catalogue()["来源"]["活动"]
        assert _seed_push(rt, simulator, history, rng) == RELATIONS
    finally:
        rt.close()

    # WeCom misbehaves from the first call the served process makes.
    for n, path in enumerate((MARK, WELCOME, "externalcontact/get", "gettoken")):
        simulator.inject_error_rate(path, 0.10, BUSY, seed=SEED + n)
    simulator.inject_stall(MARK, 2.5, count=3)  # past the 2 s client timeout: answers lost
    simulator.inject_stall(WELCOME, 2.5, count=1)
    served = Served(config, port, tmp_path)
    left = [kills]

    def between() -> None:
        if left[0] > 0:
            left[0] -= 1
            time.sleep(rng.uniform(0.0, 1.5))  # a seeded moment
            served.kill_and_restart()

    try:
        simulator.callback_url = f"http://127.0.0.1:{port}/wecom/callback"
        wait_for(lambda: simulator.calls.get((MARK, 0), 0) >= RELATIONS // 10, timeout=60)
        if window:
            simulator.inject_fault_window(MARK, 3.0, 45009)
        simulator.expire_tokens()  # mid-batch
        with contextlib.ExitStack() as chaos:
            if terminate:
                dropper = chaos.enter_context(Terminator(db_url, app_name, random.Random(SEED)))
            times = 1 if terminate else 2
            _scan_storm(simulator, state, history, rng, channel_tag, between, times=times)
        if terminate:
            assert dropper.dropped > 0
        simulator.expire_tokens()
        problems = _settle(lambda: history.check(simulator, db_url), timeout=150)
        assert problems == [], f"{problems}\n{status_counts(db_url)}"
    finally:
        served.stop()
    calls = simulator.calls
    # The faults did happen: busy answers, expired tokens, the window.
    assert calls.get((MARK, BUSY), 0) > 0
    assert calls.get((WELCOME, BUSY), 0) > 0
    assert calls.get((MARK, 42001), 0) + calls.get((WELCOME, 42001), 0) > 0
    assert (calls.get((MARK, 45009), 0) > 0) == window
    return history, served


def test_a_push_and_a_scan_storm_survive_busy_stalls_expiry_and_redelivery(
    tmp_path: Path, db_url: str, simulator: Simulator
) -> None:
    history, _ = _run(tmp_path, db_url, simulator, window=False, kills=0)
    assert sum(1 for s in history.scans if s.acked) == SCANS


def test_a_45009_window_pauses_the_push_and_it_resumes(
    tmp_path: Path, simulator: Simulator, db_url: str
) -> None:
    # The client pauses an API a whole minute on 45009 (WeCom counts per minute): slow.
    if not db_url.startswith("sqlite"):
        pytest.skip("the pause is the client's, not the database's: once is enough")
    history, _ = _run(tmp_path, db_url, simulator, window=True, kills=0)
    assert sum(1 for s in history.scans if s.acked) == SCANS


def test_kill_9_of_every_process_at_seeded_moments_loses_nothing(
    tmp_path: Path, db_url: str, simulator: Simulator
) -> None:
    history, served = _run(tmp_path, db_url, simulator, window=False, kills=3)
    assert served.starts == 4
    # Scans delivered while it was down went unanswered: WeCom would retry them; the
    # held-back deliveries after the last restart were answered.
    assert sum(1 for s in history.scans if s.acked) >= SCANS // 2


def test_connections_dropped_mid_push_and_mid_callbacks_lose_nothing(
    tmp_path: Path, db_url: str, simulator: Simulator
) -> None:
    # A callback answered while its connection was dropped must not be a 200 unless its
    # event was stored: each event is delivered once here, and every acknowledged scan is
    # checked to be welcomed (answering 200 on a failed commit loses scans).
    if db_url.startswith("sqlite"):
        pytest.skip("pg_terminate_backend: PostgreSQL only")
    history, _ = _run(tmp_path, db_url, simulator, window=False, kills=0, terminate=True)
    assert sum(1 for s in history.scans if s.acked) > 0


OUTAGE_SCANS = 4  # delivered while PostgreSQL is down, each once
BURST_PAUSE = 0.2  # seconds between the burst's scans


def _deliver(simulator: Simulator, state: str) -> tuple[Scan, str]:
    """A scan and one delivery of its event; the Scan says whether it was answered 200."""
    r = simulator.scan(state, deliver=False)
    assert r.xml is not None
    acked = any(d.status == 200 for d in simulator.post_callback(r.xml))
    return Scan(r.userid, r.external_userid, r.welcome_code, acked), r.xml


class Stream:
    """Scans delivered one after another on a thread until stopped: a callback burst."""

    def __init__(self, simulator: Simulator, state: str) -> None:
        self.simulator, self.state = simulator, state
        self.sent: list[tuple[Scan, str]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # Paced: a flood would outrun the welcomes (a code lives 20 s), not test the crash.
        while not self.stopping.wait(BURST_PAUSE):
            self.sent.append(_deliver(self.simulator, self.state))

    def __enter__(self) -> Stream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)


def _crash_pg_run(
    tmp_path: Path, cluster: pg_cluster.Cluster, simulator: Simulator
) -> tuple[History, Served, dict[str, int]]:
    rng = random.Random(SEED)
    history = History()
    simulator.add_staff("alice")
    config, port, rt = _config(tmp_path, cluster.url, simulator)
    try:
        state = welcome_channel(rt)
        channel_tag = simulator.tag_catalogue()["来源"]["活动"]
        assert _seed_push(rt, simulator, history, rng) == RELATIONS
    finally:
        rt.close()
    simulator.inject_stall(MARK, 1.0, count=40)  # a push still under way at the first crash
    served = Served(config, port, tmp_path)
    seen: dict[str, int] = {}

    def record(scan: Scan) -> None:
        history.scanned(scan)
        if scan.acked:
            history.desire(scan.userid, scan.external_userid, [channel_tag])

    def retry(sent: list[tuple[Scan, str]]) -> None:
        """WeCom retries what was not answered 200, within seconds (a code lives 20 s)."""
        for scan, xml in sent:
            if not scan.acked:
                acked = any(d.status == 200 for d in simulator.post_callback(xml))
                scan = Scan(scan.userid, scan.external_userid, scan.welcome_code, acked)
                seen["retried"] = seen.get("retried", 0) + 1
            record(scan)

    try:
        simulator.callback_url = f"http://127.0.0.1:{port}/wecom/callback"
        wait_for(lambda: simulator.calls.get((MARK, 0), 0) >= 5, timeout=60, what="the push")
        # 1. Mid-push: crash, scans arrive while the database is down, restart.
        cluster.crash()
        seen["marked_at_crash"] = simulator.calls.get((MARK, 0), 0)
        outage = [_deliver(simulator, state) for _ in range(OUTAGE_SCANS)]
        seen["acked_while_down"] = sum(scan.acked for scan, _ in outage)
        time.sleep(rng.uniform(0.5, 2.0))  # a seeded outage
        cluster.start()
        retry(outage)
        # 2. Mid-burst: scans stream in while the database crashes and comes back.
        with Stream(simulator, state) as stream:
            wait_for(lambda: len(stream.sent) >= 5, timeout=60, what="the burst under way")
            cluster.crash()
            during = len(stream.sent)
            time.sleep(rng.uniform(0.5, 2.0))
            cluster.start()
            wait_for(lambda: len(stream.sent) >= during + 5, timeout=60, what="the burst again")
        seen["burst"] = len(stream.sent)
        seen["burst_unacked"] = sum(not scan.acked for scan, _ in stream.sent)
        retry(stream.sent)
        seen["alive"] = int(served.proc.poll() is None)
        problems = _settle(lambda: history.check(simulator, cluster.url), timeout=180)
        assert problems == [], f"{problems}\n{status_counts(cluster.url)}"
    finally:
        served.stop()
    return history, served, seen


def test_postgresql_crashed_mid_push_and_mid_callbacks_loses_nothing(
    tmp_path: Path, simulator: Simulator
) -> None:
    # A callback answered while the database is down must not be a 200 unless stored: WeCom
    # retries what is not answered 200; a 200 for an event not stored is a lost scan.
    reason = pg_cluster.unavailable()
    if reason:
        pytest.skip(f"no throwaway PostgreSQL cluster: {reason}")
    cluster = pg_cluster.Cluster()
    try:
        cluster.start()
        db = Database(cluster.url)
        upgrade_to_head(db.engine)
        db.dispose()
        history, served, seen = _crash_pg_run(tmp_path, cluster, simulator)
    finally:
        cluster.remove()
    print(seen)
    assert served.starts == 1  # the process rode both crashes out
    assert seen["alive"] == 1
    assert 0 < seen["marked_at_crash"] < RELATIONS  # the first crash came mid-push
    assert seen["acked_while_down"] == 0  # nothing can be stored: nothing acknowledged
    assert seen["burst_unacked"] > 0  # the second crash did cut into the burst
    acked = [s for s in history.scans if s.acked]
    assert len(acked) >= OUTAGE_SCANS  # the retries after the restart were stored

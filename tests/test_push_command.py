"""`tagbot push`: progress and counts, --status, and a push killed midway that resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from bot.db.models import OutboxOperation
from bot.db.types import utcnow
from bot.runtime import Runtime
from bot.sync import run_sync
from bot.tags import push
from tagbot.cli import main
from tests.support import parts
from tests.support.configs import toml_text as _toml
from tests.support.corp import base_config
from tests.support.tiers import VALUE, assign_tiers, relation_tag_names, tier_runtime
from tests.support.waiting import wait_for
from wecom_sim import Simulator

N = 30


@pytest.fixture
def queued(db_url: str, simulator: Simulator) -> list[str]:
    """N customers of alice with a 高价值 tier queued for the push, nothing sent yet."""
    simulator.add_staff("alice", "Alice")
    customers = [simulator.add_relation("alice", f"wm_push_{i:02d}") for i in range(N)]
    rt = tier_runtime(db_url, simulator, VALUE)
    try:
        run_sync(db=rt.db, wecom=rt.wecom)
        assign_tiers(rt, {c: {"value": "高价值"} for c in customers})
        plan = push.enqueue_tier_push(**parts.tier_push(rt))
        assert plan.diff.new_operations == N
    finally:
        rt.close()
    simulator.reset_counters()
    return customers


def _config(tmp_path: Path, db_url: str, simulator: Simulator, batch: int = 20) -> Path:
    cfg = base_config(db_url, api_base=simulator.api_base)
    cfg["limits"] = {"outbox_batch": batch}
    path = tmp_path / "config.toml"
    path.write_text(_toml(cfg), encoding="utf-8")
    return path


def _counts(db_url: str, simulator: Simulator) -> dict[str, int]:
    rt = tier_runtime(db_url, simulator)
    try:
        with rt.db.read() as session:
            rows = session.execute(
                select(OutboxOperation.status, func.count()).group_by(OutboxOperation.status)
            ).all()
        return {str(status): int(n) for status, n in rows}
    finally:
        rt.close()


def test_status_shows_progress_without_sending(
    tmp_path: Path,
    db_url: str,
    simulator: Simulator,
    queued: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _config(tmp_path, db_url, simulator)
    assert main(["--config", str(config), "push", "--status"]) == 0
    out = capsys.readouterr().out
    assert f"pending: {N} " in out
    assert "done: 0 " in out
    assert "ETA:" in out
    assert simulator.calls == {}

    assert main(["--config", str(config), "push", "--max", "10"]) == 0
    out = capsys.readouterr().out
    assert "pending: 20 " in out
    assert "done: 10 " in out
    assert simulator.calls["externalcontact/mark_tag"] == 10

    assert main(["--config", str(config), "push"]) == 0
    out = capsys.readouterr().out
    assert "pending: 0 " in out
    assert f"done: {N} " in out
    assert "dead: 0" in out
    assert simulator.calls["externalcontact/mark_tag"] == N
    assert all(relation_tag_names(simulator, "alice", c) == {"价值分层/高价值"} for c in queued)


def test_a_push_killed_midway_loses_nothing_and_resends_at_most_the_call_in_flight(
    tmp_path: Path, db_url: str, simulator: Simulator, queued: list[str]
) -> None:
    # One operation claimed at a time, each call slow enough to kill the push midway.
    config = _config(tmp_path, db_url, simulator, batch=1)
    simulator.inject_stall("externalcontact/mark_tag", 0.1, count=N)
    tagbot = Path(sys.executable).with_name("tagbot")
    proc = subprocess.Popen(
        [str(tagbot), "--config", str(config), "push"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: _counts(db_url, simulator).get("done", 0) >= 8, timeout=60)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    at_kill = _counts(db_url, simulator)
    assert 8 <= at_kill["done"] < N
    assert at_kill.get("dead", 0) == 0
    assert at_kill["done"] + at_kill["pending"] + at_kill.get("in_flight", 0) == N
    assert at_kill.get("in_flight", 0) <= 1
    sent_before = simulator.calls["externalcontact/mark_tag"]
    # Sent but not yet recorded: at most the one call the kill interrupted.
    assert at_kill["done"] <= sent_before <= at_kill["done"] + 1

    rt: Runtime = tier_runtime(db_url, simulator)
    try:
        # The dead process's claim runs out (after CLAIM_SECONDS) and is taken again.
        with rt.db.write() as session:
            session.execute(
                update(OutboxOperation)
                .where(OutboxOperation.status == "in_flight")
                .values(locked_until=utcnow() - timedelta(seconds=1))
            )
    finally:
        rt.close()
    done = subprocess.run(
        [str(tagbot), "--config", str(config), "push"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"done: {N} " in done.stdout
    assert _counts(db_url, simulator) == {"done": N}
    assert all(relation_tag_names(simulator, "alice", c) == {"价值分层/高价值"} for c in queued)
    # Every relation got its call; only the interrupted one can have been sent twice.
    total = simulator.calls["externalcontact/mark_tag"]
    assert N <= total <= N + (sent_before - at_kill["done"])


def test_a_tiny_push_shows_no_rate(
    tmp_path: Path,
    db_url: str,
    simulator: Simulator,
    queued: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _config(tmp_path, db_url, simulator)
    assert main(["--config", str(config), "push", "--max", "3"]) == 0
    out = capsys.readouterr().out
    assert "done: 3 " in out
    # Three calls in well under a second are no rate to go by (it used to say 1/min).
    assert "速度 rate: —（完成的操作太少" in out
    assert "/min" not in out


def test_the_rate_is_measured_over_the_time_the_operations_took(
    db_url: str, simulator: Simulator, queued: list[str]
) -> None:
    rt = tier_runtime(db_url, simulator)
    now = utcnow()
    try:
        with rt.db.write() as session:
            ids = session.scalars(select(OutboxOperation.id).order_by(OutboxOperation.id)).all()
            # 20 operations one second apart, the last a minute ago, then nothing.
            for i, op_id in enumerate(ids[:20]):
                session.execute(
                    update(OutboxOperation)
                    .where(OutboxOperation.id == op_id)
                    .values(status="done", done_at=now - timedelta(seconds=60 + 19 - i))
                )
        with rt.db.read() as session:
            p = push.progress(session, fallback_per_minute=8000.0, now=now)
    finally:
        rt.close()
    assert p.done == 20
    assert p.per_minute == pytest.approx(60.0)  # not 20 over the 5-minute window (4/min)
    assert p.eta_seconds == pytest.approx((N - 20) / 60.0 * 60)

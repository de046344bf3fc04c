"""Nothing acknowledged is lost: events stored before a crash are processed after restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from bench import takeover
from bot.channels import live_codes
from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import InboxEvent
from bot.runtime import Runtime
from bot.tags.catalogue import TagPath
from tests.conftest import LiveServer, base_config
from tests.test_channels import _toml
from tests.test_scan_flow import wait_for
from tests.test_serve import _free_port
from wecom_sim import Simulator


def _make_channel(rt: Runtime) -> str:
    with live_codes.begin_with_wecom(rt.db, rt.wecom) as session:
        return live_codes.create(
            live_codes.ChannelSpec(
                name="活动", staff=("alice",), tags=(TagPath("来源", "活动"),), welcome="hi"
            ),
            session=session,
            wecom=rt.wecom,
        ).state


def _statuses(db_url: str) -> list[str]:
    db = Database(db_url)
    try:
        with db.read() as session:
            return list(session.scalars(select(InboxEvent.status)))
    finally:
        db.dispose()


def test_events_stored_without_workers_are_processed_after_restart(
    db_url: str, simulator: Simulator
) -> None:
    simulator.add_staff("alice")
    settings = settings_from_mapping(base_config(db_url, api_base=simulator.api_base), environ={})
    first = LiveServer(settings, jobs=False).start()
    simulator.callback_url = first.url + "/wecom/callback"
    state = _make_channel(first.runtime)
    scans = [simulator.scan(state, duplicate=True) for _ in range(10)]
    assert all(s.callback_status == 200 for s in scans)
    first.stop()  # acknowledged, never processed
    assert _statuses(db_url) == ["pending"] * 10

    second = LiveServer(settings, jobs=True).start()
    try:
        wait_for(lambda: _statuses(db_url) == ["done"] * 10, what="processing after restart")
        wait_for(lambda: all(simulator.relation_tags("alice", s.external_userid) for s in scans))
        sent = [w for w in simulator.welcomes if w.sent_at is not None]
        assert len(sent) == 10
        assert simulator.calls.get("externalcontact/send_welcome_msg") == 10
    finally:
        second.stop()


def _serve(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    tagbot = Path(sys.executable).with_name("tagbot")
    return subprocess.Popen(
        [str(tagbot), "--config", str(config), "serve", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # its own process group, so a kill reaches gunicorn's worker
    )


def _wait_healthy(port: int) -> None:
    def up() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # starting, or a busy machine
            return False

    wait_for(up, timeout=30, what="tagbot serve to answer")


def served_config(tmp_path: Path, db_url: str, simulator: Simulator) -> tuple[Path, int, str]:
    """Write a config for `tagbot serve` on a free port; return it, the port, a channel state.

    The channel is created in this process; the served process only answers callbacks.
    """
    simulator.add_staff("alice")
    port = _free_port()
    cfg = base_config(db_url, api_base=simulator.api_base)
    cfg["server"]["port"] = port
    config = tmp_path / "config.toml"
    config.write_text(_toml(cfg), encoding="utf-8")
    rt = Runtime(settings_from_mapping(cfg, environ={}))
    state = _make_channel(rt)
    rt.close()
    return config, port, state


def test_kill_9_after_the_ack_loses_nothing(
    tmp_path: Path, db_url: str, simulator: Simulator
) -> None:
    config, port, state = served_config(tmp_path, db_url, simulator)
    proc = _serve(config, "--no-jobs", "--workers", "1")
    try:
        _wait_healthy(port)
        simulator.callback_url = f"http://127.0.0.1:{port}/wecom/callback"
        scans = [simulator.scan(state, duplicate=True) for _ in range(20)]
        assert all(s.callback_status == 200 for s in scans)
    finally:
        # SIGKILL master and worker: no graceful shutdown, no cleanup.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert _statuses(db_url) == ["pending"] * 20

    restarted = _serve(config)
    try:
        _wait_healthy(port)
        wait_for(lambda: _statuses(db_url) == ["done"] * 20, timeout=30, what="replay")
        wait_for(lambda: all(simulator.relation_tags("alice", s.external_userid) for s in scans))
        assert simulator.calls.get("externalcontact/send_welcome_msg") == 20
        assert sum(1 for w in simulator.welcomes if w.sent_at is not None) == 20
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=20)


@pytest.mark.slow
def test_kill_9_under_load_loses_no_live_welcome_and_takes_over_at_once(
    tmp_path: Path, db_url: str, simulator: Simulator
) -> None:
    config, port, state = served_config(tmp_path, db_url, simulator)
    run = takeover.kill_run(
        simulator, config, port, state, db_url, rate=50.0, seconds=8.0, kill_after=3.0
    )
    print(takeover.report(run))
    assert run.acked > run.scans // 2  # most scans got through, before and after the kill
    assert run.alive_at_restart > 0
    assert run.lost_welcomes == []
    assert run.unfinished == 0  # every stored event done
    # One welcome per acknowledged code: WeCom refused any second attempt (41051).
    assert run.welcomes_sent == run.acked

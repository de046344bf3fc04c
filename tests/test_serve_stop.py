"""`tagbot serve` stops on SIGTERM without a crash and leaves nothing under $HOME.

gunicorn forks its workers from a process that has imported duckdb, whose import opens a
default connection with a thread pool; a worker that inherited it died of SIGSEGV or
SIGABRT at exit ("Worker (pid:…) was sent SIGSEGV!"), idle or not.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support.corp import ADMIN_TOKEN
from tests.support.processes import inbox_statuses, serve, served_config, wait_healthy
from tests.support.tiers import relation_tag_names
from tests.support.waiting import wait_for
from wecom_sim import Simulator

pytestmark = pytest.mark.slow  # real `tagbot serve` processes under gunicorn

# What gunicorn's master logs when a worker dies of a signal, and what a native crash prints.
CRASH = re.compile(r"was sent SIG|SIGSEGV|SIGABRT|terminate called|Fatal Python error|Traceback")


def _home(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An empty HOME for the served process (no XDG_RUNTIME_DIR: gunicorn's fallback is HOME)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    return home, env | {"HOME": str(home)}


def _stop(proc: subprocess.Popen[bytes], log: Path) -> tuple[int, list[str]]:
    """SIGTERM the master; return its exit code and the log lines that tell of a crash."""
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    assert any("Shutting down: Master" in line for line in lines), lines[-20:]
    return code, [line for line in lines if CRASH.search(line)]


@pytest.mark.parametrize(
    "args", [(), ("--workers", "2"), ("--no-jobs",)], ids=["jobs", "workers2", "nojobs"]
)
def test_serve_stops_on_sigterm_without_a_crash(
    tmp_path: Path, db_url: str, simulator: Simulator, args: tuple[str, ...]
) -> None:
    config, port, _state = served_config(tmp_path, db_url, simulator)
    home, env = _home(tmp_path)
    log = tmp_path / "serve.log"
    proc = serve(config, *args, log=log, env=env)
    try:
        wait_healthy(port)
        assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 200
    finally:
        code, crashes = _stop(proc, log)
    assert (code, crashes) == (0, [])
    assert sorted(p.name for p in home.iterdir()) == []  # no ~/.gunicorn control socket


def test_serve_stops_cleanly_after_a_scan_its_retier_and_an_explanation(
    tmp_path: Path, db_url: str, simulator: Simulator
) -> None:
    """The served process has run DuckDB (touched re-tier, explanation) when it stops."""
    config, port, state = served_config(tmp_path, db_url, simulator, default_tiers=True)
    home, env = _home(tmp_path)
    log = tmp_path / "serve.log"
    proc = serve(config, log=log, env=env)
    try:
        wait_healthy(port)
        simulator.callback_url = f"http://127.0.0.1:{port}/wecom/callback"
        ext = simulator.scan(state).external_userid
        wait_for(lambda: inbox_statuses(db_url) == ["done"], timeout=30, what="the scan")
        # The scan touched the customer: the retier-touched worker tiers them in DuckDB.
        wanted = {"来源/活动", "生命周期/潜在客户", "首次渠道/活动"}
        wait_for(
            lambda: wanted <= relation_tag_names(simulator, "alice", ext),
            timeout=60,
            what="the scanned customer's tier tags",
        )
        answer = requests.get(
            f"http://127.0.0.1:{port}/api/customers/{ext}",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )
        assert answer.status_code == 200
        tiers = {t["dimension"]: t["tier"] for t in answer.json()["tiers"]}
        assert tiers["lifecycle"] == "潜在客户"
    finally:
        code, crashes = _stop(proc, log)
    assert (code, crashes) == (0, [])
    assert sorted(p.name for p in home.iterdir()) == []

"""`tagbot serve` runs under gunicorn with its jobs and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.corp import ADMIN_TOKEN, AES_KEY, AGENT_ID, CORP_ID, SECRET, TOKEN
from tests.support.processes import free_port

pytestmark = pytest.mark.slow  # real `tagbot serve` processes under gunicorn


def _start_serve(tmp_path: Path, db_url: str, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[wecom]\ncorp_id = "{CORP_ID}"\nsecret = "{SECRET}"\nagent_id = {AGENT_ID}\n'
        f'token = "{TOKEN}"\nencoding_aes_key = "{AES_KEY}"\n'
        f'api_base = "http://127.0.0.1:9/cgi-bin/"\n'
        f'[database]\nurl = "{db_url}"\n'
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nadmin_token = "{ADMIN_TOKEN}"\n',
        encoding="utf-8",
    )
    tagbot = Path(sys.executable).with_name("tagbot")
    proc = subprocess.Popen(
        [str(tagbot), "--config", str(config), "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return proc, port


def _wait_healthy(port: int) -> int | None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code
        except requests.ConnectionError:
            time.sleep(0.1)
    return None


def test_serve_answers_health_and_stops_on_sigterm(tmp_path: Path, db_url: str) -> None:
    proc, port = _start_serve(tmp_path, db_url)
    try:
        status = _wait_healthy(port)
        assert status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out.decode()
    assert b"Traceback" not in out


def test_serve_without_jobs_still_exposes_the_queue_depths(tmp_path: Path, db_url: str) -> None:
    proc, port = _start_serve(tmp_path, db_url, "--no-jobs")
    try:
        assert _wait_healthy(port) == 200
        body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert 'tagbot_outbox_depth{status="pending"} 0.0' in body
    assert 'tagbot_inbox_depth{status="pending"} 0.0' in body
    assert "tagbot_up 1.0" in body
    assert proc.returncode == 0, out.decode()

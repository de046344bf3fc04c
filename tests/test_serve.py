"""`tagbot serve` runs under gunicorn with its jobs and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.conftest import ADMIN_TOKEN, AES_KEY, AGENT_ID, CORP_ID, SECRET, TOKEN


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_serve_answers_health_and_stops_on_sigterm(tmp_path: Path, db_url: str) -> None:
    port = _free_port()
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
        [str(tagbot), "--config", str(config), "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            try:
                status = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out.decode()
    assert b"Traceback" not in out

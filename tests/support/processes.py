"""Run `tagbot serve` as a real process and read what it stored."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import requests
from sqlalchemy import select

from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import InboxEvent
from bot.runtime import Runtime
from tests.support.channels import welcome_channel
from tests.support.configs import toml_text
from tests.support.corp import base_config
from tests.support.waiting import wait_for
from wecom_sim import Simulator


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def inbox_statuses(db_url: str) -> list[str]:
    """Read every inbox event's status with a fresh connection."""
    db = Database(db_url)
    try:
        with db.read() as session:
            return list(session.scalars(select(InboxEvent.status)))
    finally:
        db.dispose()


def serve(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    """Start `tagbot serve` in its own process group."""
    tagbot = Path(sys.executable).with_name("tagbot")
    return subprocess.Popen(
        [str(tagbot), "--config", str(config), "serve", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # its own process group, so a kill reaches gunicorn's worker
    )


def wait_healthy(port: int) -> None:
    """Wait until the served process answers /healthz with 200."""

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
    port = free_port()
    cfg = base_config(db_url, api_base=simulator.api_base)
    cfg["server"]["port"] = port
    config = tmp_path / "config.toml"
    config.write_text(toml_text(cfg), encoding="utf-8")
    rt = Runtime(settings_from_mapping(cfg, environ={}))
    state = welcome_channel(rt)
    rt.close()
    return config, port, state

"""Run `tagbot serve` as a real process and read what it stored."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests
from sqlalchemy import select

from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import InboxEvent
from bot.runtime import Runtime
from bot.tiering.defaults import default_tiers_text
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


def run_tagbot(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the `tagbot` console script as an operator would, in `cwd`; capture its output."""
    tagbot = Path(sys.executable).with_name("tagbot")
    return subprocess.run(
        [str(tagbot), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**(os.environ if env is None else env)},
        timeout=120,
        check=False,
    )


def serve(
    config: Path,
    *extra: str,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
    wrap: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Start `tagbot serve` in its own process group (see `start`)."""
    return start(config, "serve", *extra, log=log, env=env, wrap=wrap)


def start(
    config: Path,
    command: str,
    *extra: str,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
    wrap: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Start `tagbot <command>` (serve, worker, scheduler) in its own process group.

    `log` receives its stdout and stderr (else they are dropped); `env` replaces the
    environment (PYTHONUNBUFFERED is added); `wrap` runs it under a command (faketime).
    """
    tagbot = Path(sys.executable).with_name("tagbot")
    with contextlib.ExitStack() as files:  # the child holds its own copy of the log file
        out = subprocess.DEVNULL if log is None else files.enter_context(log.open("wb"))
        return subprocess.Popen(
            [*wrap, str(tagbot), "--config", str(config), command, *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
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


def served_config(
    tmp_path: Path, db_url: str, simulator: Simulator, *, default_tiers: bool = False
) -> tuple[Path, int, str]:
    """Write a config for `tagbot serve` on a free port; return it, the port, a channel state.

    The channel is created in this process; the served process only answers callbacks.
    `default_tiers` adds the default tier dimensions (so scans get re-tiered).
    """
    simulator.add_staff("alice")
    port = free_port()
    cfg = base_config(db_url, api_base=simulator.api_base)
    cfg["server"]["port"] = port
    config = tmp_path / "config.toml"
    tiers = "[tiering]\n" + default_tiers_text() if default_tiers else ""
    config.write_text(toml_text(cfg) + tiers, encoding="utf-8")
    rt = Runtime(settings_from_mapping(cfg | tomllib.loads(tiers), environ={}))
    state = welcome_channel(rt)
    rt.close()
    return config, port, state

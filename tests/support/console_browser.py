"""The console's browser fixtures: Debian's Chromium through Playwright, and `tagbot serve`.

One served bot (a seeded SQLite file, the simulator, a console config) and one browser for
the whole run: every browser test module signs in and reads pages from the same process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.console import audit
from bot.db import Database
from bot.db.types import utcnow
from tests.support.browser import CHROMIUM, artifacts_dir, unavailable
from tests.support.configs import toml_text
from tests.support.console import (
    DIMENSION,
    Seeded,
    console_config,
    seed_groups,
    seed_overview,
)
from tests.support.corp import ADMIN_TOKEN
from tests.support.processes import free_port, serve, wait_healthy
from tests.support.simulators import start_simulator
from wecom_sim import Simulator

OLD_AUDIT_ROWS = 55  # more than one page of the 系统 page's audit list
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@dataclass
class Served:
    """The bot served by `tagbot serve` on a seeded SQLite file, and its simulator."""

    url: str
    db_url: str
    sim: Simulator
    seeded: Seeded


@dataclass
class Tab:
    """A page in its own browser context, with what went wrong in it."""

    page: Any
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def _dimension_toml() -> str:
    lines = ["[[tiering.dimensions]]"]
    lines += [f'{k} = "{v}"' for k, v in DIMENSION.items() if isinstance(v, str)]
    for tier in DIMENSION["tiers"]:
        lines += ["[[tiering.dimensions.tiers]]"]
        lines += [f'{k} = "{v}"' for k, v in tier.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


@contextlib.contextmanager
def serving(
    folder: Path,
    sqlite_template: Path,
    *,
    staff: Iterable[tuple[str, str]],
    prepare: Callable[[Database, Simulator], Seeded],
    extra_toml: str = "",
) -> Iterator[Served]:
    """Serve a copy of the migrated template, prepared, with the console config, then stop it."""
    db_path = folder / "tagbot.db"
    shutil.copyfile(sqlite_template, db_path)
    db_url = f"sqlite:///{db_path}"
    sim = start_simulator()
    for userid, name in staff:
        sim.add_staff(userid, name)
    port = free_port()
    cfg = console_config(db_url, sim, dimensions=False)
    cfg["server"]["port"] = port
    cfg["app"] = {"log_level": "WARNING"}
    config = folder / "config.toml"
    config.write_text(toml_text(cfg) + _dimension_toml() + extra_toml, encoding="utf-8")
    db = Database(db_url)
    try:
        seeded = prepare(db, sim)
    finally:
        db.dispose()
    proc: subprocess.Popen[bytes] = serve(config)
    try:
        wait_healthy(port)
        yield Served(f"http://127.0.0.1:{port}", db_url, sim, seeded)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        sim.stop()


def _overview_with_old_audit(db: Database, _sim: Simulator) -> Seeded:
    now, tz = utcnow(), ZoneInfo("Asia/Shanghai")
    seeded = seed_overview(db, now=now, tz=tz)
    seed_groups(db, now=now, tz=tz)
    with db.write() as session:
        for i in range(OLD_AUDIT_ROWS):
            audit.record(session=session, actor=f"earlier{i}", role="admin", action="login")
    return seeded


@pytest.fixture(scope="session")
def served(
    browser: Any, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[Served]:
    with serving(
        tmp_path_factory.mktemp("console"),
        sqlite_template,
        staff=(("boss", "老板"), ("watcher", "观察员"), ("stranger", "路人")),
        prepare=_overview_with_old_audit,
    ) as found:
        yield found


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    found = Tab(page)

    def on_console(message: Any) -> None:
        # An answer's status (the wrong token's 401) is logged as an error too: not ours.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            found.errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda e: found.errors.append(str(e)))

    def on_dialog(dialog: Any) -> None:
        found.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    yield found
    context.close()


def screenshot(page: Any, name: str, capsys: pytest.CaptureFixture[str]) -> Path:
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    with capsys.disabled():
        print(f"\n  screenshot: {path}")
    return path


def sign_in_with_token(page: Any, url: str, token: str = ADMIN_TOKEN) -> None:
    page.goto(url + "/admin/login")
    page.fill("#token", token)
    with page.expect_navigation():  # through the redirect, to the page it ends on
        page.click("form[action='/admin/login'] button[type=submit]")


def sign_in_with_wecom(page: Any, url: str, userid: str) -> None:
    page.goto(url + "/admin/login")
    with page.expect_navigation():
        page.click("#wecom-login")  # to the simulator's login page
    with page.expect_navigation():
        page.click(f"a[data-userid='{userid}']")  # this member scans; back with a code

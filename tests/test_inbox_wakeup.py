"""Workers in another process are woken by PostgreSQL NOTIFY, not by their safety poll."""

from __future__ import annotations

import time

import pytest

from bot.channels import live_codes
from bot.runtime import Runtime
from jobs.background import Background
from tests.conftest import LiveServer
from tests.support.configs import settings_for
from tests.support.waiting import wait_for
from wecom_sim import Simulator


def test_separate_worker_process_is_woken_at_once(db_url: str, simulator: Simulator) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("one process per SQLite file: the in-process wake-up covers it")
    settings = settings_for(db_url, simulator)
    web = LiveServer(settings, jobs=False).start()  # like `tagbot serve --no-jobs`
    worker_rt = Runtime(settings)  # like `tagbot worker`: its own wake-up events
    background = Background(worker_rt)
    background.start_workers()
    try:
        simulator.add_staff("alice")
        simulator.callback_url = web.url + "/wecom/callback"
        rt = web.runtime
        state = live_codes.create(
            live_codes.ChannelSpec(name="官网", staff=("alice",), welcome="hi"),
            db=rt.db,
            wecom=rt.wecom,
        ).state
        simulator.reset_counters()
        took = []
        for _ in range(4):
            time.sleep(0.7)  # the workers are idle, waiting on their 2 s poll
            scan = simulator.scan(state)
            code = scan.welcome_code

            def sent(code: str | None = code) -> bool:
                return any(w.welcome_code == code and w.sent_at for w in simulator.welcomes)

            wait_for(sent, what="welcome")
            w = next(w for w in simulator.welcomes if w.welcome_code == code)
            took.append((w.sent_at or 0) - w.issued_at)
        assert max(took) < 0.5, took
    finally:
        web.stop()
        background.stop()
        worker_rt.close()

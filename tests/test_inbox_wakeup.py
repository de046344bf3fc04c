"""Workers in another process are woken by PostgreSQL NOTIFY, not by their safety poll.

The worker process's inbox poll is set to an hour: each welcome going out within the
test's wait can only be the wake-up's doing.
"""

from __future__ import annotations

import pytest

from bot.channels import live_codes
from bot.runtime import Runtime
from jobs.background import Background
from jobs.inbox import INBOX_WORKER
from tests.support.configs import settings_for
from tests.support.live import LiveServer
from tests.support.waiting import wait_for
from wecom_sim import Simulator

POLL_SECONDS = 3600.0  # the worker process's inbox poll: never comes round during the test
WAIT_SECONDS = 60.0  # generous on a busy machine, and still far short of the poll


def test_separate_worker_process_is_woken_at_once(db_url: str, simulator: Simulator) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("one process per SQLite file: the in-process wake-up covers it")
    settings = settings_for(db_url, simulator)
    web = LiveServer(settings, jobs=False).start()  # like `tagbot serve --no-jobs`
    worker_rt = Runtime(settings)  # like `tagbot worker`: its own wake-up events
    background = Background(worker_rt, idle_seconds={INBOX_WORKER.name: POLL_SECONDS})
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
        for _ in range(4):  # one after the other: each finds the workers idle
            code = simulator.scan(state).welcome_code

            def sent(code: str | None = code) -> bool:
                return any(w.welcome_code == code and w.sent_at for w in simulator.welcomes)

            wait_for(sent, timeout=WAIT_SECONDS, what="the welcome, sent on the wake-up")
        assert len(simulator.welcomes) == 4
    finally:
        web.stop()
        background.stop()
        worker_rt.close()

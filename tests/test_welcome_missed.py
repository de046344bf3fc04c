"""A welcome whose code expired in a backlog is counted, logged and shown on /healthz."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
from sqlalchemy import update

from bot import wecom_limits as limits
from bot.channels import live_codes
from bot.db.models import InboxEvent
from bot.db.types import utcnow
from bot.tags.catalogue import TagPath
from jobs.inbox import INBOX_WORKER
from tests.support.configs import settings_for
from tests.support.live import LiveServer
from wecom_sim import Simulator


@pytest.fixture
def server(db_url: str, simulator: Simulator) -> Iterator[LiveServer]:
    """The app over HTTP; the test runs the inbox worker's steps itself."""
    live = LiveServer(settings_for(db_url, simulator), jobs=False).start()
    simulator.callback_url = live.url + "/wecom/callback"
    yield live
    live.stop()


def _missed_metric(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=5).text
    line = next(
        (
            x
            for x in text.splitlines()
            if x.startswith('tagbot_welcomes_missed_total{reason="expired"}')
        ),
        None,
    )
    return float(line.split()[-1]) if line else 0.0


def test_a_welcome_expired_in_the_backlog_is_counted_logged_and_on_healthz(
    server: LiveServer, simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    simulator.add_staff("alice", "Alice")
    rt = server.runtime
    channel = live_codes.create(
        live_codes.ChannelSpec(
            name="海报", staff=("alice",), tags=(TagPath("来源", "海报"),), welcome="欢迎"
        ),
        db=rt.db,
        wecom=rt.wecom,
    )
    # Acknowledged as a web-only process (`serve --no-jobs`) would: stored, not handed
    # off, so the worker reads each event's arrival from the database, where the backlog
    # is simulated below (a hand-off entry carries the ack's own clock reading instead).
    rt.handoff.active = False
    assert requests.get(f"{server.url}/healthz", timeout=5).json() == {
        "status": "ok",
        "database": "ok",
    }
    before = _missed_metric(server.url)

    fresh = simulator.scan(channel.state)
    late = simulator.scan(channel.state)
    assert (fresh.callback_status, late.callback_status) == (200, 200)
    # The second event waited in a backlog past its code's 20 s.
    with rt.db.write() as session:
        session.execute(
            update(InboxEvent)
            .where(InboxEvent.payload.contains(late.external_userid))
            .values(received_at=utcnow() - timedelta(seconds=limits.WELCOME_CODE_SECONDS + 5))
        )
    rt.handoff.nudge()  # as the NOTIFY from the web process does
    with caplog.at_level(logging.WARNING, logger="bot.channels.welcome"):
        while INBOX_WORKER.step(rt):
            pass

    sent = {w.welcome_code for w in simulator.welcomes if w.sent_at}
    assert fresh.welcome_code in sent
    assert late.welcome_code not in sent
    # Both relations got the channel's tag all the same: only the welcome was lost.
    tag = simulator.tag_catalogue()["来源"]["海报"]
    for s in (fresh, late):
        assert simulator.relation_tags(s.userid, s.external_userid) == {tag}
    missed = rt.missed_welcomes.value
    assert (missed.count, missed.last_reason) == (1, "expired")
    assert _missed_metric(server.url) == before + 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [m for m in warnings if "welcome missed" in m] == [
        next(m for m in warnings if late.external_userid in m)
    ]
    health = requests.get(f"{server.url}/healthz", timeout=5).json()
    assert health["status"] == "ok"
    assert health["welcomes_missed"] == 1
    assert "1 welcomes missed" in health["welcomes_missed_note"]

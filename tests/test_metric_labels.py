"""Label values in /metrics come from closed sets, whatever callbacks and WeCom send."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from prometheus_client import REGISTRY

from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import InboxEvent
from bot.errors import WeComError
from bot.metriclabels import CALLBACK_EVENTS, CHANGE_TYPES, OTHER, FirstSeen
from bot.states import InboxStatus
from bot.wecom import metrics as wecom_metrics
from bot.wecom.client import WeComClient
from bot.wecom.metrics import ERRCODE_LABELS
from tests.support.corp import base_config
from tests.support.live import LiveServer

HOSTILE = [f"fuzz_{i}_{'x' * i}" for i in range(30)] + ["", "<script>", 'a"b\\c', "删除"]


def _label_values(text: str, metric: str, label: str) -> set[str]:
    pattern = re.compile(rf'^{metric}\{{[^}}]*{label}="((?:[^"\\]|\\.)*)"', re.MULTILINE)
    return set(pattern.findall(text))


@pytest.fixture
def served(db_url: str, simulator: Any) -> Iterator[LiveServer]:
    settings = settings_from_mapping(base_config(db_url, simulator.api_base), environ={})
    server = LiveServer(settings, jobs=True).start()
    simulator.callback_url = server.url + "/wecom/callback"
    yield server
    server.stop()


def test_fuzzed_change_types_become_other_in_inbox_metrics(
    served: LiveServer, simulator: Any
) -> None:
    for i, change_type in enumerate(HOSTILE):
        event = "change_external_contact" if i % 2 else f"evil_event_{i}"
        xml = simulator.event_xml(event, change_type, {"UserID": "u1"}, create_time=1000 + i)
        assert [d.status for d in simulator.post_callback(xml)] == [200]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with served.runtime.db.read() as session:
            open_rows = session.query(InboxEvent).filter(
                InboxEvent.status.in_([InboxStatus.PENDING, InboxStatus.PROCESSING])
            )
            if open_rows.count() == 0:
                break
        time.sleep(0.05)
    with served.runtime.db.read() as session:
        assert session.query(InboxEvent).count() == len(HOSTILE)
        assert session.query(InboxEvent).filter(
            InboxEvent.status == InboxStatus.IGNORED
        ).count() == len(HOSTILE)
    text = requests.get(served.url + "/metrics", timeout=5).text
    seen = _label_values(text, "tagbot_inbox_latency_seconds_count", "change_type")
    assert OTHER in seen
    assert seen <= CHANGE_TYPES | CALLBACK_EVENTS | {OTHER}


def test_wecom_errcodes_are_bounded_in_call_metrics(
    db: Database, simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh budget, so earlier tests' codes don't count and later tests keep theirs.
    monkeypatch.setattr(
        wecom_metrics,
        "_errcode_label",
        FirstSeen(ERRCODE_LABELS, wecom_metrics.DOCUMENTED_ERRCODES),
    )
    config = base_config(db.url, api_base=simulator.api_base)
    settings = settings_from_mapping(config, environ={})
    client = WeComClient(settings.wecom, settings.limits, db=db)
    try:
        for errcode in range(71000, 71000 + ERRCODE_LABELS + 10):
            simulator.inject_fault("externalcontact/get_follow_user_list", errcode=errcode)
            with pytest.raises(WeComError):
                client.get_follow_user_list()
    finally:
        client.close()
    codes = {
        sample.labels["errcode"]
        for family in REGISTRY.collect()
        if family.name == "tagbot_wecom_calls"
        for sample in family.samples
    }
    assert OTHER in codes
    assert len({c for c in codes if c.startswith("71")}) == ERRCODE_LABELS

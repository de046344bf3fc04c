"""Queue and run states: enums in code, the same plain strings in rows, JSON and metrics."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry, Counter, generate_latest
from sqlalchemy import select, text

from bot import states
from bot.callbacks import inbox
from bot.db import Database
from bot.db.models import InboxEvent

ENUMS = (
    states.QueueStatus,
    states.InboxStatus,
    states.OutboxStatus,
    states.AlertStatus,
    states.TaskStatus,
    states.RunStatus,
    states.DeliveryStatus,
)


def test_a_state_written_as_an_enum_is_read_back_as_its_plain_string(db: Database) -> None:
    with db.write() as session:
        event = InboxEvent(dedup_key="k1", event="change_external_contact", payload="<xml/>")
        session.add(event)
        session.flush()
        assert event.status == "pending"  # the column's default, an enum member
        assert inbox.QUEUE.fail(event.id, inbox.MAX_ATTEMPTS, "boom", session=session)  # dead
    with db.read() as session:
        raw = session.execute(text("SELECT status FROM inbox_events")).scalar_one()
        assert (raw, type(raw)) == ("dead", str)
        found = session.scalars(
            select(InboxEvent.id).where(InboxEvent.status == states.InboxStatus.DEAD)
        ).all()
        assert found == [event.id]
        assert inbox.QUEUE.counts(session=session) == {
            "pending": 0,
            "processing": 0,
            "done": 0,
            "ignored": 0,
            "dead": 1,
        }


def test_states_write_their_values_in_json_text_and_metric_labels() -> None:
    registry = CollectorRegistry()
    seen = Counter("seen", "states seen", ["status"], registry=registry)
    for enum in ENUMS:
        for member in enum:
            assert json.dumps(member) == json.dumps(member.value)
            assert (str(member), f"{member}") == (member.value, member.value)
            seen.labels(member).inc()
    exposed = generate_latest(registry).decode()
    assert 'seen_total{status="in_flight"} 1.0' in exposed
    assert "InboxStatus" not in exposed
    assert "DEAD" not in exposed

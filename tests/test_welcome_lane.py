"""The welcome fast lane: newest first, stale offers dropped, each code handled once."""

from __future__ import annotations

import time

from bot.channels import welcome_lane
from bot.db.types import utcnow
from bot.wecom.events import CallbackEvent
from bot.wecom.types import ExternalContact


def _event(code: str) -> CallbackEvent:
    return CallbackEvent(
        event="change_external_contact",
        change_type="add_external_contact",
        userid="alice",
        external_userid=f"wm{code}",
        welcome_code=code,
    )


def test_lane_ignores_offers_while_no_lane_thread_runs() -> None:
    lane = welcome_lane.WelcomeLane()
    lane.offer(_event("A"), utcnow())
    assert lane.waiting() == 0


def test_newest_first_and_stale_offers_dropped() -> None:
    lane = welcome_lane.WelcomeLane()
    lane.active = True
    for code in ("A", "B", "C"):
        lane.offer(_event(code), utcnow())
    first = lane.take()
    assert first is not None
    assert first.event.welcome_code == "C"
    # Age what is left past the limit: the lane gives up on them, the inbox keeps them.
    with lane._lock:
        aged = [
            welcome_lane.Offer(o.event, o.received_at, time.monotonic() - welcome_lane.MAX_AGE - 1)
            for o in lane._waiting
        ]
        lane._waiting.clear()
        lane._waiting.extend(aged)
    assert lane.take() is None
    assert lane.waiting() == 0


def test_each_code_is_taken_once_and_released_on_failure() -> None:
    lane = welcome_lane.WelcomeLane()
    assert lane.take_code("A")
    assert not lane.take_code("A")
    contact = ExternalContact(external_userid="wmA", name="王")
    lane.finish("A", contact)
    assert lane.contact_for("A", wait=0.1) == contact
    assert lane.take_code("B")
    lane.release("B")
    assert lane.take_code("B")  # given back after a failure: the inbox worker may try

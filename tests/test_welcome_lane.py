"""The welcome fast lane: newest first, stale offers dropped, each code handled once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from bot.channels import welcome_lane
from bot.channels.welcome import ContextCache, MissedTally
from bot.config import settings_from_mapping
from bot.customers.scan_welcome import send_once
from bot.db import Database
from bot.db.types import utcnow
from bot.wecom.client import WeComClient
from bot.wecom.events import CallbackEvent
from bot.wecom.types import ExternalContact
from tests.support.corp import base_config
from wecom_sim import Simulator


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


def test_a_code_is_given_back_when_its_welcome_fails_on_the_database(
    tmp_path: Path, simulator: Simulator
) -> None:
    # A connection lost while reading the channel (here: a database with no tables) must
    # not leave the code taken: the event's retry would find it taken and skip the welcome.
    db = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    settings = settings_from_mapping(base_config(db.url, api_base=simulator.api_base), environ={})
    wecom = WeComClient(settings.wecom, settings.limits, db=db)
    lane = welcome_lane.WelcomeLane()
    ev = CallbackEvent(
        event="change_external_contact",
        change_type="add_external_contact",
        userid="alice",
        external_userid="wmGone",
        welcome_code="CODE1",
        state="s",
    )
    try:
        with pytest.raises(OperationalError):
            send_once(
                ev,
                utcnow(),
                db=db,
                wecom=wecom,
                settings=settings,
                lane=lane,
                cache=ContextCache(),
                missed=MissedTally(),
            )
        assert lane.take_code("CODE1")  # given back: the retry sends it
    finally:
        wecom.close()
        db.dispose()

"""Reach metrics from 群发 deliveries: windows, arms, results, clicks; rules read them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.config import DimensionSettings
from bot.db import Database
from bot.db.models import Customer, TierAssignment
from bot.rules import load_dimensions
from bot.tiering.engine import compute_metrics
from bot.tiering.run import retier
from tests.support.deliveries import delivery
from tests.tier_metrics_factory import AS_OF, TZ, customer, event, local

REACH = ("messages_90d", "reach_rate_90d", "click_rate_90d")


def _reach(db: Database, **kw: Any) -> dict[str, tuple[Any, ...]]:
    with db.read() as session:
        ext = dict(session.execute(select(Customer.id, Customer.external_userid)).all())
    with compute_metrics(db, as_of=AS_OF, tz=TZ, **kw) as frame:
        return {ext[cid]: tuple(row[m] for m in REACH) for cid, row in frame.rows().items()}


def _build(db: Database) -> None:
    with db.write() as s:
        customer(s, "never")
        old = customer(s, "old")
        delivery(s, old, "sent", local(90), sent=local(90, 13))  # the first day outside
        event(s, old, "click", local(89))

        m = customer(s, "mixed")
        # Sent, clicked 47 h after sending: clicked.
        delivery(s, m, "sent", local(10, 10), sent=local(10, 12))
        event(s, m, "click", local(8, 11))
        # Never sent: a click within 3 days of its creation still counts.
        delivery(s, m, "not_friend", local(20, 9))
        event(s, m, "click", local(20, 10))
        # A click before it does not.
        delivery(s, m, "over_quota", local(30))
        event(s, m, "click", local(31))
        # The last local day inside the window; a click 3 days later exactly is too late.
        delivery(s, m, "unconfirmed", local(89, 0, 1))
        event(s, m, "click", local(86, 0, 1))
        # Waiting for the member: counted as a message, not yet as a result.
        delivery(s, m, "created", local(2))
        # Not messages: the holdout, a follow-up, a failed call, one not yet created,
        # one after as_of.
        delivery(s, m, "holdout", local(5), arm="holdout")
        delivery(s, m, "notified", local(5), action="follow_up")
        delivery(s, m, "failed", local(5))
        delivery(s, m, "queued", local(4))
        delivery(s, m, "sent", AS_OF + timedelta(minutes=5), sent=AS_OF + timedelta(minutes=6))
        event(s, m, "view", local(10, 13))  # not a click

        reached = customer(s, "reached")
        delivery(s, reached, "sent", local(3), sent=local(3, 15))
        delivery(s, reached, "sent", local(1), sent=local(1, 15))


def test_reach_metrics_on_hand_built_deliveries(db: Database) -> None:
    _build(db)
    got = _reach(db)
    assert got["never"] == (None, None, None)
    assert got["old"] == (0, None, None)  # messaged, but not within 90 days
    assert got["mixed"][0] == 5
    assert got["mixed"][1] == pytest.approx(1 / 4)  # sent ÷ {sent, not_friend, quota, unconf.}
    assert got["mixed"][2] == pytest.approx(2 / 5)
    assert got["reached"] == (2, 1.0, 0.0)


def test_touched_run_computes_the_same_reach(db: Database) -> None:
    _build(db)
    full = _reach(db)
    with db.read() as session:
        ids = list(session.scalars(select(Customer.id).where(Customer.external_userid == "mixed")))
    assert _reach(db, customer_ids=ids) == {"mixed": full["mixed"]}


def test_a_tier_rule_on_reach_rate(db: Database) -> None:
    _build(db)
    dims = load_dimensions(
        [
            DimensionSettings.model_validate(
                {
                    "name": "reach",
                    "tag_group": "触达",
                    "tiers": [
                        {"tag": "难触达", "when": "messages_90d >= 3 and reach_rate_90d < 0.5"},
                        {"tag": "爱点击", "when": "click_rate_90d >= 0.5 or reach_rate_90d == 1"},
                        {"tag": "未群发", "when": "messages_90d is missing"},
                    ],
                }
            )
        ]
    )
    report = retier(db, dims, tz=TZ, as_of=AS_OF)
    assert report.run_id is not None
    with db.read() as session:
        tiers = dict(
            session.execute(
                select(Customer.external_userid, TierAssignment.tier).join(
                    TierAssignment, TierAssignment.customer_id == Customer.id
                )
            ).all()
        )
    # "old" has messages_90d 0 and no rates: no tier matches it (missing compares unknown).
    assert tiers == {"mixed": "难触达", "reached": "爱点击", "never": "未群发"}

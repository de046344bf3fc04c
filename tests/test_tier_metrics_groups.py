"""Customer group (客户群) metrics: counts, last join, first channel, `group.<群名>`, joins as
interactions; rules, `when`, the rule trial and the 社群 explanation read them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from bot.campaign_checks import parse_when
from bot.config import DimensionSettings
from bot.db import Database
from bot.db.models import Customer, GroupChat, GroupMember, TierAssignment
from bot.errors import ConfigError
from bot.outreach.audience import narrow
from bot.reports.rule_trial import TrialFrames, trial
from bot.rules import RuleError, load_dimensions, parse_and_check
from bot.tiering.defaults import default_tiering
from bot.tiering.engine import compute_metrics
from bot.tiering.run import retier
from bot.tiering.why import explain_customer
from tests.tier_metrics_factory import AS_OF, TZ, channel, customer, event, local

GROUP_METRICS = (
    "groups_count",
    "days_since_group_join",
    "group_channel",
    "interactions_30d",
    "interactions_90d",
    "days_since_last_interaction",
)


def _group(session: Session, name: str, *, dismissed: datetime | None = None) -> int:
    g = GroupChat(chat_id=f"wr{name}{dismissed or ''}", name=name, dismissed_at=dismissed)
    session.add(g)
    session.flush()
    return g.id


def _stay(
    session: Session,
    group: int,
    member: str,
    joined: datetime,
    *,
    scene: int = 3,
    left: datetime | None = None,
    channel_id: int | None = None,
    member_type: int = 2,
) -> None:
    # customer_id stays NULL: stays belong to customers by external_userid.
    session.execute(
        insert(GroupMember).values(
            group_chat_id=group,
            member_userid=member,
            member_type=member_type,
            joined_at=joined,
            join_scene=scene,
            left_at=left,
            channel_id=channel_id,
        )
    )


def _build(db: Database) -> None:
    with db.write() as s:
        customer(s, "never")
        customer(s, "vip")
        customer(s, "left")
        back = customer(s, "back")
        customer(s, "later")
        customer(s, "gone")
        early, qr = channel(s, "早鸟群码"), channel(s, "VIP群码")
        vip, new, old = _group(s, "VIP会员群"), _group(s, "新品群"), _group(s, "老群")
        dismissed = _group(s, "解散群", dismissed=local(3))
        # vip: left 老群 (joined by link through a channel 100 days ago), in VIP会员群 (its
        # QR, 40 days ago) and in 新品群 (pulled in directly 5 days ago: not their act).
        _stay(s, old, "vip", local(100), scene=2, left=local(60), channel_id=early.id)
        _stay(s, vip, "vip", local(40), scene=3, channel_id=qr.id)
        _stay(s, new, "vip", local(5), scene=1)
        _stay(s, vip, "left", local(20), left=local(10))
        # back: left VIP会员群 and came back two days ago: one group, one more join.
        _stay(s, vip, "back", local(50), left=local(30))
        _stay(s, vip, "back", local(2))
        _stay(s, vip, "later", AS_OF + timedelta(minutes=5))  # after as_of: not yet
        _stay(s, dismissed, "gone", local(9))  # the group was dismissed since
        _stay(s, new, "stranger", local(1))  # nobody's customer
        _stay(s, new, "never", local(1), member_type=1)  # a staff member's userid
        event(s, back, "view", local(1))


def _metrics(db: Database, **kw: Any) -> dict[str, dict[str, Any]]:
    with db.read() as session:
        ext = dict(session.execute(select(Customer.id, Customer.external_userid)).all())
    with compute_metrics(db, as_of=AS_OF, tz=TZ, **kw) as frame:
        return {
            ext[cid]: {**{m: row[m] for m in GROUP_METRICS}, "group_names": row["group_names"]}
            for cid, row in frame.rows().items()
        }


def _ids(db: Database, *exts: str) -> list[int]:
    with db.read() as session:
        return list(session.scalars(select(Customer.id).where(Customer.external_userid.in_(exts))))


def test_group_metrics_on_hand_built_stays(db: Database) -> None:
    _build(db)
    got = _metrics(db)
    row = (
        "groups_count",
        "days_since_group_join",
        "group_channel",
        "interactions_30d",
        "interactions_90d",
        "days_since_last_interaction",
    )
    assert tuple(got["never"][m] for m in row) == (0, None, None, 0, 0, None)
    assert got["never"]["group_names"] == []
    # Two groups now; the last join 5 days ago; the first channel the earliest stay's;
    # only the QR join counts as an interaction within 90 days (the link join is 100 ago).
    assert tuple(got["vip"][m] for m in row) == (2, 5, "早鸟群码", 0, 1, 40)
    assert got["vip"]["group_names"] == ["VIP会员群", "新品群"]
    assert tuple(got["left"][m] for m in row) == (0, 20, None, 1, 1, 20)
    assert got["left"]["group_names"] == []
    assert tuple(got["back"][m] for m in row) == (1, 2, None, 2, 3, 1)
    assert tuple(got["later"][m] for m in row) == (0, None, None, 0, 0, None)
    assert tuple(got["gone"][m] for m in row) == (0, 9, None, 1, 1, 9)


def test_touched_run_computes_the_same_group_metrics(db: Database) -> None:
    _build(db)
    full = _metrics(db)
    touched = _metrics(db, customer_ids=_ids(db, "vip", "back", "never"))
    assert touched == {k: full[k] for k in ("vip", "back", "never")}


def test_group_membership_in_the_rule_language() -> None:
    # Any group name is a boolean: usable bare, with not / and / or, never compared.
    parse_and_check("group.VIP会员群 and not group.新品群 or groups_count >= 2")
    with pytest.raises(RuleError, match="compares numbers only"):
        parse_and_check("group.VIP会员群 > 1")
    with pytest.raises(RuleError, match="cannot compare"):
        parse_and_check('group.VIP会员群 == "是"')
    with pytest.raises(ConfigError, match="tag_from needs a text value"):
        load_dimensions(
            [DimensionSettings(name="g", tag_group="群", tag_from="group.VIP会员群", max_tags=5)]
        )


def _tiers(db: Database) -> dict[tuple[str, str], str]:
    with db.read() as session:
        return {
            (ext, dim): tier
            for ext, dim, tier in session.execute(
                select(
                    Customer.external_userid, TierAssignment.dimension, TierAssignment.tier
                ).join(TierAssignment, TierAssignment.customer_id == Customer.id)
            ).all()
        }


LEFT_EVERY_GROUP = (
    "not group.VIP会员群 and groups_count == 0 and days_since_group_join is not missing"
)


def test_a_tier_rule_on_group_membership(db: Database) -> None:
    _build(db)
    dims = load_dimensions(
        [
            DimensionSettings.model_validate(
                {
                    "name": "groups",
                    "tag_group": "群",
                    "tiers": [
                        {"tag": "VIP群", "when": "group.VIP会员群"},
                        {"tag": "新入群", "when": "days_since_group_join <= 10"},
                        {"tag": "退群", "when": LEFT_EVERY_GROUP},
                    ],
                }
            )
        ]
    )
    retier(db, dims, tz=TZ, as_of=AS_OF)
    assert _tiers(db) == {
        ("vip", "groups"): "VIP群",
        ("back", "groups"): "VIP群",
        ("gone", "groups"): "新入群",
        ("left", "groups"): "退群",
    }


def test_when_and_the_rule_trial_read_group_membership(db: Database) -> None:
    _build(db)
    ids = dict(zip(("vip", "back", "left", "never"), [0, 0, 0, 0], strict=True))
    for ext in ids:
        (ids[ext],) = _ids(db, ext)
    expr = parse_when("group.VIP会员群 and interactions_30d >= 1", default_tiering().dimensions)
    listed = narrow(db, expr, list(ids.values()), as_of=AS_OF, tz=TZ)
    full = narrow(db, expr, list(ids.values()), as_of=AS_OF, tz=TZ, id_list_max=1)
    assert listed == full == {ids["back"]}
    frames = TrialFrames()
    try:
        result = trial("group.VIP会员群", db=db, frames=frames, tz=TZ, now=AS_OF)
    finally:
        frames.close()
    assert result.error is None
    assert result.names == ("group.VIP会员群",)
    assert (result.matched, result.customers) == (2, 6)
    assert sorted((r.external_userid, r.values) for r in result.sample) == [
        ("back", ("是",)),
        ("vip", ("是",)),
    ]


def test_the_default_community_dimension_and_its_explanation(db: Database) -> None:
    _build(db)
    dims = load_dimensions(default_tiering().dimensions)
    assert [d.name for d in dims][-1] == "community"
    retier(db, dims, tz=TZ, as_of=AS_OF)
    tiers = _tiers(db)
    assert {ext: tiers[(ext, "community")] for ext in ("vip", "back", "left", "never")} == {
        "vip": "已入群",
        "back": "已入群",
        "left": "未入群",
        "never": "未入群",
    }
    (vip,) = _ids(db, "vip")
    (view,) = [
        v
        for v in explain_customer(db, dims, customer_id=vip, tz=TZ, as_of=AS_OF)
        if v.dimension == "community"
    ]
    assert view.tag_group == "社群"
    assert (view.tier, view.now) == ("已入群", "已入群")
    assert view.metrics == {"groups_count": 2}
    assert "groups_count = 2" in "\n".join(view.lines)

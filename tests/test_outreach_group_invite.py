"""group_invite campaigns end to end: the simulator over HTTP, callbacks into the bot.

A tier is invited into the groups of a group live code by a 群发 per staff member whose
attachment leads to the code's QR; the holdout gets nothing; who is already in a group of
the code is not invited; a join after the invitation counts as a conversion, a join of
another group only as joining "any group".
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.channels import group_codes
from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import CampaignDelivery, CampaignRun, Customer, TierAssignment
from bot.db.types import utcnow
from bot.errors import ConfigError, NotFoundError, ValidationError
from bot.outreach import execute
from bot.outreach import results as outreach_results
from bot.outreach.plan import in_holdout, plan_run
from bot.outreach.report import campaign_results
from bot.outreach.service import get_campaign, run_campaign
from tagbot.cli import main
from tests.support import parts
from tests.support.campaigns import DIMENSIONS, config_text
from tests.support.channels import store_channel
from tests.support.corp import base_config
from tests.support.groups import inbox_settled, stays
from tests.support.live import LiveServer
from tests.support.waiting import wait_for
from wecom_sim import Simulator

NAME = "VIP入群邀请"
INVITE = {
    "name": NAME,
    "action": "group_invite",
    "dimension": "value",
    "tiers": ["高价值"],
    "group_code": "VIP群码",
    "holdout_pct": 50,
    "cooldown_days": 0,
    "text": "您好，我是{staff}，诚邀您加入会员专属群",
}
MINUTE = 60.0


def _config(db_url: str, sim: Simulator, *campaigns: dict[str, Any]) -> dict[str, Any]:
    config = base_config(db_url, api_base=sim.api_base)
    config["staff"] = {"alice": "小爱"}
    config["tiering"] = {"dimensions": DIMENSIONS}
    config["outreach"] = {"quiet_hours": "", "campaigns": list(campaigns or [INVITE])}
    return config


@pytest.fixture
def live(db_url: str, simulator: Simulator) -> Iterator[LiveServer]:
    settings = settings_from_mapping(_config(db_url, simulator), environ={})
    server = LiveServer(settings, jobs=True).start()
    simulator.callback_url = server.url + "/wecom/callback"
    simulator.groupmsg_task_delay = 0.0
    simulator.add_staff("alice", "Alice")
    yield server
    server.stop()


def _settled(live: LiveServer) -> None:
    wait_for(lambda: inbox_settled(live.runtime.db), what="every callback processed")


def _arms(n: int) -> tuple[list[str], list[str]]:
    """Pick external_userids: n that the campaign treats and n it holds out."""
    treated: list[str] = []
    held: list[str] = []
    i = 0
    while len(treated) < n or len(held) < n:
        ext = f"wmInvite{i:04d}"
        side = held if in_holdout(NAME, ext, INVITE["holdout_pct"]) else treated
        if len(side) < n:
            side.append(ext)
        i += 1
    return treated, held


def _high_value(live: LiveServer, sim: Simulator, exts: list[str]) -> None:
    """Make each of alice's customers through the 门店 code, then 高价值."""
    shop = store_channel(live, "门店", ("来源/门店",))
    for ext in exts:
        sim.scan(shop, external_userid=ext, name=f"客户{ext[-2:]}")
    _settled(live)
    with live.runtime.db.write() as session:
        for cid in session.scalars(select(Customer.id).where(Customer.external_userid.in_(exts))):
            session.add(TierAssignment(customer_id=cid, dimension="value", tier="高价值"))


def _group_code(live: LiveServer, sim: Simulator, name: str, group: str) -> tuple[str, str]:
    """Create a group live code to a new group of alice's; return (chat_id, state)."""
    chat = sim.create_group_chat("alice", group).chat_id
    _settled(live)
    rt = live.runtime
    view = group_codes.create(
        group_codes.GroupCodeSpec(name=name, chat_ids=(chat,)), db=rt.db, wecom=rt.wecom
    )
    return chat, view.state


def _deliveries(live: LiveServer, run_id: int) -> dict[str, tuple[str, str]]:
    with live.runtime.db.read() as session:
        rows = session.execute(
            select(Customer.external_userid, CampaignDelivery.arm, CampaignDelivery.status)
            .join(Customer, Customer.id == CampaignDelivery.customer_id)
            .where(CampaignDelivery.run_id == run_id)
        ).all()
    return {ext: (arm, status) for ext, arm, status in rows}


def test_a_tier_is_invited_held_out_and_its_joins_measured(
    live: LiveServer, simulator: Simulator
) -> None:
    rt = live.runtime
    treated, held = _arms(3)
    member = "wmInviteMember"  # 高价值 and in the VIP group already: not invited
    _high_value(live, simulator, [*treated, *held, member])
    chat, state = _group_code(live, simulator, "VIP群码", "VIP会员群")
    _, other_state = _group_code(live, simulator, "新人群码", "新人群")
    simulator.advance_time(MINUTE)
    simulator.join_group_by_qr(state, external_userid=member)
    wait_for(lambda: bool(stays(rt.db, chat, member)), what="the earlier member recorded")
    _settled(live)
    with rt.db.read() as session:
        qr_code = group_codes.get_group_code("VIP群码", session=session).qr_code

    plan = run_campaign(NAME, **parts.outreach(rt))

    assert plan.status == "done"
    assert plan.run_id is not None
    assert sorted(c.external_userid for c in plan.treatment) == sorted(treated)
    assert sorted(c.external_userid for c in plan.holdout) == sorted(held)
    assert [c.external_userid for c in plan.in_group] == [member]
    # One 群发 for alice: the treated customers only, the code's QR as the first attachment.
    msgs = list(simulator.group_msgs.values())
    assert len(msgs) == 1
    msg = msgs[0]
    assert (msg.chat_type, msg.sender) == ("single", "alice")
    assert sorted(s.external_userid for s in msg.sends) == sorted(treated)
    assert msg.text == "您好，我是小爱，诚邀您加入会员专属群"
    assert msg.attachments[0]["msgtype"] == "link"
    assert msg.attachments[0]["link"]["url"] == qr_code
    assert len(msg.attachments) == 1

    # alice confirms; the poll records who received it.
    simulator.confirm_group_msg(msg.msgid, "alice")
    outreach_results.poll_results(db=rt.db, wecom=rt.wecom, now=utcnow() + timedelta(hours=1))
    got = _deliveries(live, plan.run_id)
    assert got == {
        **dict.fromkeys(treated, ("treatment", "sent")),
        **dict.fromkeys(held, ("holdout", "holdout")),
    }

    # After the invitation: two treated customers join the VIP group through its code; one
    # held-out customer joins another group (any group, not the code's).
    simulator.advance_time(MINUTE)
    for ext in treated[:2]:
        simulator.join_group_by_qr(state, external_userid=ext)
    simulator.join_group_by_qr(other_state, external_userid=held[0])
    wait_for(lambda: all(stays(rt.db, chat, e) for e in treated[:2]), what="the joins recorded")
    _settled(live)

    with rt.db.read() as session:
        results = campaign_results(NAME, session=session, now=utcnow() + timedelta(days=31))
    overall = results.segments[0]
    code_7d = overall.metric("joined_code_7d")
    assert (code_7d.treatment.n, code_7d.treatment.events) == (3, 2)
    assert (code_7d.holdout.n, code_7d.holdout.events) == (3, 0)
    assert code_7d.absolute is not None
    assert code_7d.absolute.value == pytest.approx(2 / 3)
    anyg = overall.metric("joined_any_30d")
    assert (anyg.treatment.events, anyg.holdout.events) == (2, 1)
    assert overall.metric("conversion_30d").treatment.events == 0  # orders: none
    keys = [m["key"] for m in results.to_json()["segments"][0]["intent_to_treat"]]
    assert keys[:4] == ["joined_code_7d", "joined_code_14d", "joined_code_30d", "joined_any_30d"]
    assert results.action == "group_invite"

    # A second run invites nobody twice: those who joined are now left out as members.
    again = run_campaign(NAME, **parts.outreach(rt))
    assert sorted(c.external_userid for c in again.in_group) == sorted([member, *treated[:2]])
    assert len(simulator.group_msgs) == 1  # the same day: capped, nothing new sent
    assert sorted(c.external_userid for c in again.capped) == [treated[2]]


def test_a_join_before_the_run_is_no_conversion(live: LiveServer, simulator: Simulator) -> None:
    rt = live.runtime
    treated, held = _arms(1)
    _high_value(live, simulator, [*treated, *held])
    _group_code(live, simulator, "VIP群码", "VIP会员群")
    other, other_state = _group_code(live, simulator, "新人群码", "新人群")
    simulator.join_group_by_qr(other_state, external_userid=treated[0])  # before the run
    wait_for(lambda: bool(stays(rt.db, other, treated[0])), what="the join recorded")
    _settled(live)
    simulator.advance_time(MINUTE)

    plan = run_campaign(NAME, **parts.outreach(rt))

    # in another group, not the code's: still invited
    assert [c.external_userid for c in plan.treatment] == treated
    with rt.db.read() as session:
        results = campaign_results(NAME, session=session, now=utcnow() + timedelta(days=31))
    overall = results.segments[0]
    assert overall.metric("joined_any_30d").treatment.events == 0
    assert overall.metric("joined_code_30d").treatment.events == 0


def test_an_unknown_or_staff_group_code_is_refused_before_anything_is_recorded(
    db_url: str, simulator: Simulator
) -> None:
    settings = settings_from_mapping(
        _config(
            db_url,
            simulator,
            {**INVITE, "name": "无此群码", "group_code": "没有的群码"},
            {**INVITE, "name": "员工码", "group_code": "门店"},
        ),
        environ={},
    )
    server = LiveServer(settings, jobs=False).start()
    try:
        simulator.add_staff("alice", "Alice")
        store_channel(server, "门店", ("来源/门店",))
        rt = server.runtime
        with pytest.raises(NotFoundError, match="没有名为 '没有的群码' 的群活码"):
            run_campaign("无此群码", **parts.outreach(rt))
        with pytest.raises(NotFoundError, match="没有名为 '没有的群码' 的群活码"):
            run_campaign("无此群码", **parts.outreach(rt), dry_run=True)
        with pytest.raises(ValidationError, match="是员工活码，不是群活码"):
            run_campaign("员工码", **parts.outreach(rt))
        with rt.db.read() as session:
            assert session.scalar(select(func.count()).select_from(CampaignRun)) == 0
        assert simulator.group_msgs == {}
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"group_code": None}, "action group_invite needs group_code"),
        ({"group_code": ""}, "group_code"),
        (
            {"action": "group_message", "text": "hi"},
            "group_code is only for actions group_invite and group_broadcast",
        ),
        (
            {"attachments": [{"type": "link", "title": "t", "url": "https://x.example"}] * 9},
            "at most 8 attachments",
        ),
    ],
)
def test_a_bad_group_invite_config_names_the_key(
    tmp_path: Path, simulator: Simulator, keys: dict[str, Any], message: str
) -> None:
    db_url = f"sqlite:///{tmp_path / 'unused.db'}"
    campaign = {k: v for k, v in {**INVITE, **keys}.items() if v is not None}
    with pytest.raises(ConfigError, match=r"outreach\.campaigns\[0\]") as refused:
        settings_from_mapping(_config(db_url, simulator, campaign), environ={})
    assert message in str(refused.value)


def test_the_cli_refuses_an_unknown_group_code_in_one_line(
    tmp_path: Path, db: Database, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.toml"
    campaign = {**INVITE, "name": "无此群码", "group_code": "没有的群码"}
    path.write_text(config_text(db.url, [campaign], api_base=simulator.api_base), "utf-8")
    for args in (["--dry-run"], []):
        assert main(["--config", str(path), "outreach", "run", "无此群码", *args]) == 1
        assert capsys.readouterr().err.strip().splitlines() == [
            "error: 没有名为 '没有的群码' 的群活码，请先用 tagbot channel create 没有的群码"
            " --group 群ID 创建 / no group live code '没有的群码'"
        ]
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(CampaignRun)) == 0


def test_quiet_hours_hold_an_invitation_until_they_end(db_url: str, simulator: Simulator) -> None:
    config = _config(db_url, simulator)
    config["outreach"]["quiet_hours"] = "22:00-08:00"
    server = LiveServer(settings_from_mapping(config, environ={}), jobs=True).start()
    simulator.callback_url = server.url + "/wecom/callback"
    simulator.add_staff("alice", "Alice")
    try:
        rt = server.runtime
        treated, held = _arms(1)
        _high_value(server, simulator, [*treated, *held])
        _group_code(server, simulator, "VIP群码", "VIP会员群")
        tz = rt.settings.tz
        day = (utcnow() + timedelta(days=1)).astimezone(tz).date()
        night = datetime.combine(day, time(23, 30), tzinfo=tz).astimezone(UTC)
        morning = datetime.combine(day + timedelta(days=1), time(8, 0), tzinfo=tz)
        plan = plan_run(
            get_campaign(rt.settings, NAME), db=rt.db, settings=rt.settings, as_of=utcnow()
        )
        assert plan.run_id is not None
        assert execute.dispatch_run(plan.run_id, **parts.outreach(rt), clock=lambda: night) == (
            "held"
        )
        assert simulator.group_msgs == {}
        done = execute.dispatch_run(
            plan.run_id, **parts.outreach(rt), clock=lambda: morning.astimezone(UTC)
        )
        assert done == "done"
        (msg,) = simulator.group_msgs.values()
        assert [s.external_userid for s in msg.sends] == treated
    finally:
        server.stop()

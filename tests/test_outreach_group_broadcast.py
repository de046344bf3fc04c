"""group_broadcast campaigns end to end: a 群发 to customer groups, sent by their owners.

Against the simulator over HTTP: groups are picked by their members' tiers or by a group
live code, each owner gets one add_msg_template with chat_type "group" and exactly the
chosen groups, the results come back per group, and a second run in the cooldown posts
nothing again.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.channels import group_codes
from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import (
    CampaignGroupDelivery,
    CampaignRun,
    CampaignTask,
    Customer,
    GroupChat,
    GroupMember,
    StaffAlert,
    TierAssignment,
)
from bot.db.types import utcnow
from bot.errors import ConfigError, NotFoundError, WeComError
from bot.outreach import execute
from bot.outreach import results as outreach_results
from bot.outreach.claims import SETTLE_SECONDS
from bot.outreach.report import campaign_results
from bot.outreach.service import run_campaign
from bot.runtime import Runtime
from tagbot.cli import main
from tests.support import parts
from tests.support.campaigns import AS_OF, DIMENSIONS, assign, config_text, customer
from tests.support.channels import store_channel
from tests.support.corp import ADMIN_TOKEN, base_config
from tests.support.groups import inbox_settled
from tests.support.live import LiveServer
from tests.support.waiting import wait_for
from wecom_sim import Simulator

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BY_TIER = {
    "name": "高价值群通知",
    "action": "group_broadcast",
    "dimension": "value",
    "tiers": ["高价值"],
    "min_share": 60,
    "holdout_pct": 0,
    "text": "各位会员好，本周会员日福利已上线",
}
BY_CODE = {
    "name": "VIP群通知",
    "action": "group_broadcast",
    "group_code": "VIP群码",
    "holdout_pct": 0,
    "text": "{staff}：VIP 群专属活动",
}


def _config(db_url: str, sim: Simulator, *campaigns: dict[str, Any]) -> dict[str, Any]:
    config = base_config(db_url, api_base=sim.api_base)
    config["staff"] = {"alice": "小爱", "bob": "小波"}
    config["tiering"] = {"dimensions": DIMENSIONS}
    config["outreach"] = {"quiet_hours": "", "campaigns": list(campaigns)}
    return config


@pytest.fixture
def live(db_url: str, simulator: Simulator) -> Iterator[LiveServer]:
    settings = settings_from_mapping(_config(db_url, simulator, BY_TIER, BY_CODE), environ={})
    server = LiveServer(settings, jobs=True).start()
    simulator.callback_url = server.url + "/wecom/callback"
    simulator.groupmsg_task_delay = 0.0
    simulator.add_staff("alice", "Alice")
    simulator.add_staff("bob", "Bob")
    yield server
    server.stop()


def _settled(live: LiveServer) -> None:
    wait_for(lambda: inbox_settled(live.runtime.db), what="every callback processed")


def _corp(live: LiveServer, sim: Simulator) -> dict[str, str]:
    """Eight customers (four 高价值) in three groups; return group name -> chat_id.

    VIP会员群 (alice, the VIP群码's group): 2 of 2 高价值; 普通群 (alice): 1 of 3;
    VIP二群 (bob): 2 of 3 — at least 60 %: VIP会员群 and VIP二群.
    """
    shop = store_channel(live, "门店", ("来源/门店",))
    exts = [f"wmBroadcast{i}" for i in range(8)]
    for ext in exts:
        sim.scan(shop, external_userid=ext, name=ext[-3:])
    _settled(live)
    with live.runtime.db.write() as session:
        for cid in session.scalars(
            select(Customer.id).where(Customer.external_userid.in_(exts[:4]))
        ):
            session.add(TierAssignment(customer_id=cid, dimension="value", tier="高价值"))
    chats = {
        "VIP会员群": sim.create_group_chat("alice", "VIP会员群", [exts[0], exts[1]]).chat_id,
        "普通群": sim.create_group_chat("alice", "普通群", [exts[2], exts[4], exts[5]]).chat_id,
        "VIP二群": sim.create_group_chat("bob", "VIP二群", [exts[3], exts[0], exts[6]]).chat_id,
    }
    wait_for(
        lambda: _known_groups(live) == len(chats) and inbox_settled(live.runtime.db),
        what="the groups recorded",
    )
    rt = live.runtime
    group_codes.create(
        group_codes.GroupCodeSpec(name="VIP群码", chat_ids=(chats["VIP会员群"],)),
        db=rt.db,
        wecom=rt.wecom,
    )
    return chats


def _known_groups(live: LiveServer) -> int:
    with live.runtime.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(GroupChat)) or 0)


def _group_msgs(sim: Simulator) -> dict[str, list[str]]:
    """Return sender -> chat ids of every chat_type group 群发 in the simulator."""
    out: dict[str, list[str]] = {}
    for msg in sim.group_msgs.values():
        assert msg.chat_type == "group"
        out.setdefault(msg.sender, []).extend(sorted(s.chat_id for s in msg.sends))
    return out


def _statuses(live: LiveServer, run_id: int) -> dict[str, str]:
    with live.runtime.db.read() as session:
        rows = session.execute(
            select(GroupChat.name, CampaignGroupDelivery.status)
            .join(GroupChat, GroupChat.id == CampaignGroupDelivery.group_chat_id)
            .where(CampaignGroupDelivery.run_id == run_id)
        ).all()
    return {str(name): str(status) for name, status in rows}


def test_groups_mostly_in_a_tier_get_one_group_message_per_owner_once(
    live: LiveServer, simulator: Simulator
) -> None:
    rt = live.runtime
    chats = _corp(live, simulator)

    plan = run_campaign(BY_TIER["name"], **parts.outreach(rt))

    assert plan.status == "done"
    assert plan.run_id is not None
    assert plan.chats is not None
    assert sorted(t.name for t in plan.chats.treatment) == ["VIP二群", "VIP会员群"]
    assert {t.name: (t.in_tiers, t.members) for t in plan.chats.treatment} == {
        "VIP会员群": (2, 2),
        "VIP二群": (2, 3),
    }
    assert _group_msgs(simulator) == {
        "alice": [chats["VIP会员群"]],
        "bob": [chats["VIP二群"]],
    }
    assert {m.text for m in simulator.group_msgs.values()} == {BY_TIER["text"]}
    with rt.db.read() as session:
        notices = sorted((a.userid, a.subject) for a in session.scalars(select(StaffAlert)))
    assert notices == [
        ("alice", "1 个客户群的群发待确认"),
        ("bob", "1 个客户群的群发待确认"),
    ]

    # alice confirms, bob does not (yet): per-group results, like a customer 群发.
    alice_msg = next(m for m in simulator.group_msgs.values() if m.sender == "alice")
    simulator.confirm_group_msg(alice_msg.msgid, "alice")
    outreach_results.poll_results(db=rt.db, wecom=rt.wecom, now=utcnow() + timedelta(hours=1))
    assert _statuses(live, plan.run_id) == {"VIP会员群": "sent", "VIP二群": "created"}
    # Three days without bob confirming: unconfirmed, and final.
    outreach_results.poll_results(db=rt.db, wecom=rt.wecom, now=utcnow() + timedelta(days=4))
    assert _statuses(live, plan.run_id) == {"VIP会员群": "sent", "VIP二群": "unconfirmed"}

    # Again within the cooldown: the groups are cooling, nothing is posted twice.
    again = run_campaign(BY_TIER["name"], **parts.outreach(rt))
    assert again.chats is not None
    assert sorted(t.name for t in again.chats.cooling) == ["VIP二群", "VIP会员群"]
    assert again.chats.treatment == []
    assert len(simulator.group_msgs) == 2

    with rt.db.read() as session:
        results = campaign_results(BY_TIER["name"], session=session)
    assert results.groups == {"sent": 1, "unconfirmed": 1}
    assert results.segments == ()


def test_the_groups_of_a_group_code_with_the_owners_name(
    live: LiveServer, simulator: Simulator
) -> None:
    rt = live.runtime
    chats = _corp(live, simulator)

    plan = run_campaign(BY_CODE["name"], **parts.outreach(rt))

    assert plan.status == "done"
    assert _group_msgs(simulator) == {"alice": [chats["VIP会员群"]]}
    (msg,) = simulator.group_msgs.values()
    assert msg.text == "小爱：VIP 群专属活动"
    with rt.db.read() as session:
        runs = session.scalars(select(CampaignRun)).all()
    assert [(r.treatment, r.holdout, r.action) for r in runs] == [(1, 0, "group_broadcast")]


def test_an_unknown_group_code_is_refused_and_nothing_recorded(
    db_url: str, simulator: Simulator
) -> None:
    campaign = {**BY_CODE, "name": "无此群", "group_code": "没有的群码"}
    settings = settings_from_mapping(_config(db_url, simulator, campaign), environ={})
    server = LiveServer(settings, jobs=False).start()
    try:
        rt = server.runtime
        with pytest.raises(NotFoundError, match="没有名为 '没有的群码' 的群活码"):
            run_campaign("无此群", **parts.outreach(rt))
        with rt.db.read() as session:
            assert session.scalar(select(func.count()).select_from(CampaignRun)) == 0
        assert simulator.group_msgs == {}
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"group_code": None}, "action group_broadcast needs group_code"),
        ({"on_enter": "高价值", "dimension": "value"}, "on_enter and when select customers"),
        ({"text": ""}, "action group_broadcast needs text or attachments"),
        ({"tiers": ["高价值"]}, "tiers need dimension"),
        ({"min_share": 0}, "min_share"),
    ],
)
def test_a_bad_group_broadcast_config_names_the_key(
    tmp_path: Path, simulator: Simulator, keys: dict[str, Any], message: str
) -> None:
    db_url = f"sqlite:///{tmp_path / 'unused.db'}"
    campaign = {k: v for k, v in {**BY_CODE, **keys}.items() if v is not None}
    with pytest.raises(ConfigError, match=r"outreach\.campaigns\[0\]") as refused:
        settings_from_mapping(_config(db_url, simulator, campaign), environ={})
    assert message in str(refused.value)


def test_the_simulator_refuses_a_group_the_sender_does_not_own(
    live: LiveServer, simulator: Simulator
) -> None:
    chats = _corp(live, simulator)
    with pytest.raises(WeComError) as refused:
        live.runtime.wecom.add_msg_template(
            sender="alice", chat_type="group", chat_id_list=[chats["VIP二群"]], text="hi"
        )
    assert refused.value.errcode == 40050
    assert simulator.group_msgs == {}


def test_the_cli_dry_run_lists_the_groups_per_owner(
    tmp_path: Path, db: Database, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(config_text(db.url, [BY_TIER], api_base=simulator.api_base), "utf-8")
    with db.write() as s:
        vip = GroupChat(chat_id="wrVIP", name="VIP群", owner_userid="zhang")
        plain = GroupChat(chat_id="wrPlain", name="普通群", owner_userid="zhang")
        s.add_all([vip, plain])
        s.flush()
        for i, (group, tier) in enumerate(
            [(vip, "高价值"), (vip, "高价值"), (vip, None), (plain, "高价值"), (plain, None)]
        ):
            c = customer(s, f"wm_{i}", f"客户{i}")
            if tier:
                assign(s, c, "value", tier)
            s.add(
                GroupMember(
                    group_chat_id=group.id,
                    member_userid=c.external_userid,
                    member_type=2,
                    customer_id=c.id,
                    joined_at=AS_OF - timedelta(days=3),
                )
            )
    assert main(["--config", str(path), "outreach", "run", BY_TIER["name"], "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == [
        "客户群 1 个：发送 1，对照组 0，冷却中 0（括号内：符合层级的客户 / 群内客户）",
        "群主 zhang：",
        "  发送 1 个：VIP群（2/3 人）",
    ]
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(CampaignRun)) == 0


def test_the_api_answers_groups_for_a_group_broadcast_and_404_for_an_unknown_code(
    db: Database, simulator: Simulator
) -> None:
    from handlers.app import EXTENSION_KEY, create_app

    unknown = {**BY_CODE, "name": "无此群", "group_code": "没有的群码"}
    invite = {
        "name": "入群邀请",
        "action": "group_invite",
        "dimension": "value",
        "tiers": ["高价值"],
        "group_code": "没有的群码",
    }
    settings = settings_from_mapping(
        _config(db.url, simulator, BY_TIER, unknown, invite), environ={}
    )
    with db.write() as s:
        vip = GroupChat(chat_id="wrVIP", name="VIP群", owner_userid="zhang")
        s.add(vip)
        s.flush()
        c = customer(s, "wm_1", "客户1")
        assign(s, c, "value", "高价值")
        s.add(
            GroupMember(
                group_chat_id=vip.id,
                member_userid="wm_1",
                member_type=2,
                customer_id=c.id,
                joined_at=AS_OF,
            )
        )
    app = create_app(settings)
    try:
        api = app.test_client()
        got = api.post(
            f"/api/outreach/campaigns/{BY_TIER['name']}/runs",
            json={"dry_run": True},
            headers=AUTH,
        )
        assert got.status_code == 200
        body = got.get_json()
        assert body["counts"] == {"treatment": 1, "holdout": 0, "cooling": 0}
        assert body["groups"]["treatment"] == [
            {
                "chat_id": "wrVIP",
                "name": "VIP群",
                "owner_userid": "zhang",
                "members": 1,
                "in_tiers": 1,
            }
        ]
        for name in ("无此群", "入群邀请"):
            got = api.post(f"/api/outreach/campaigns/{name}/runs", json={}, headers=AUTH)
            assert got.status_code == 404
            assert "没有名为 '没有的群码' 的群活码" in got.get_data(as_text=True)
        with db.read() as session:
            assert session.scalar(select(func.count()).select_from(CampaignRun)) == 0
    finally:
        app.extensions[EXTENSION_KEY].close()


def test_a_timeout_after_wecom_created_the_group_message_is_resolved_not_posted_twice(
    live: LiveServer, simulator: Simulator, db_url: str
) -> None:
    chats = _corp(live, simulator)
    config = _config(db_url, simulator, BY_TIER, BY_CODE)
    config["wecom"]["timeout_seconds"] = 0.5
    rt = Runtime(settings_from_mapping(config, environ={}))
    try:
        simulator.inject_stall("externalcontact/add_msg_template", 1.5)  # answers too late

        plan = run_campaign(BY_CODE["name"], **parts.outreach(rt))

        assert plan.status == "sending"
        assert plan.run_id is not None
        wait_for(lambda: len(simulator.group_msgs) == 1, what="WeCom to create it anyway")
        later = utcnow() + timedelta(seconds=SETTLE_SECONDS + 1)
        assert execute.perform_due(**parts.outreach(rt), clock=lambda: later) == 1

        (msgid,) = simulator.group_msgs
        with rt.db.read() as session:
            (task,) = session.scalars(
                select(CampaignTask).where(CampaignTask.run_id == plan.run_id)
            ).all()
        assert (task.status, task.msgid, task.attempts) == ("created", msgid, 1)
        assert simulator.calls["externalcontact/add_msg_template"] == 1
        assert _group_msgs(simulator) == {"alice": [chats["VIP会员群"]]}
        assert _statuses(live, plan.run_id) == {"VIP会员群": "created"}
    finally:
        rt.wecom.close()
        rt.close()

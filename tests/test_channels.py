"""Channels through the CLI and the admin API, daily-cap rotation and config reconciliation."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import update

from bot.channels import live_codes, lookup
from bot.config import load_settings, settings_from_mapping
from bot.db.models import ChannelStaff, FollowRelation
from bot.db.types import utcnow
from bot.runtime import Runtime
from bot.sync import run_sync
from jobs import channels as channel_jobs
from tagbot.cli import main
from tests.support.configs import toml_text
from tests.support.corp import ADMIN_TOKEN, base_config
from tests.support.live import LiveServer
from tests.support.waiting import wait_for
from wecom_sim import Simulator


@pytest.fixture
def config(tmp_path: Path, db_url: str, simulator: Simulator) -> Path:
    """A config on the simulator with alice, bob and carol, synced (channel create needs it)."""
    path = tmp_path / "config.toml"
    path.write_text(toml_text(base_config(db_url, api_base=simulator.api_base)), encoding="utf-8")
    for u in ("alice", "bob", "carol"):
        simulator.add_staff(u, u.title())
    rt = Runtime(load_settings(path))
    run_sync(db=rt.db, wecom=rt.wecom)
    rt.close()
    return path


def _way(simulator: Simulator, state: str) -> Any:
    return next(w for w in simulator.contact_ways.values() if w.state == state)


def test_cli_create_list_show_update_delete(
    config: Path, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--config", str(config), "channel"]
    code = main(
        [
            *args,
            "create",
            "春季活动",
            "--staff",
            "alice,bob",
            "--tag",
            "来源/春季活动",
            "--tag",
            "兴趣/护肤",
            "--welcome",
            "你好 {name}",
            "--attach",
            "link:新人礼|https://example.com/gift",
            "--verify",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    state = fields["state"]
    assert state.startswith("ch_")
    assert len(state) <= 30
    way = simulator.contact_ways[fields["config_id"]]
    assert (way.type, way.scene, way.user, way.state) == (2, 2, ["alice", "bob"], state)
    assert way.skip_verify is False
    assert fields["qr_code"] == way.qr_code
    catalogue = simulator.tag_catalogue()
    assert set(catalogue["来源"]) == {"春季活动"}
    assert set(catalogue["兴趣"]) == {"护肤"}

    assert main([*args, "create", "单人", "--staff", "carol", "--state", "store_01"]) == 0
    assert _way(simulator, "store_01").type == 1
    capsys.readouterr()

    assert main([*args, "list"]) == 0
    listing = capsys.readouterr().out
    assert "春季活动" in listing
    assert "store_01" in listing

    # Changing the staff must not reset skip_verify (wechatpy's helper would).
    assert main([*args, "update", "春季活动", "--staff", "bob,carol", "--welcome", "嗨"]) == 0
    way = simulator.contact_ways[fields["config_id"]]
    assert way.user == ["bob", "carol"]
    assert way.skip_verify is False
    capsys.readouterr()
    assert main([*args, "show", "春季活动"]) == 0
    shown = capsys.readouterr().out
    assert "嗨" in shown
    assert "扫码 0 / 添加 0 / 流失 0" in shown

    assert main([*args, "delete", "春季活动", "--yes"]) == 0
    assert fields["config_id"] not in simulator.contact_ways
    assert main([*args, "show", "春季活动"]) == 1


def test_cli_refuses_bad_input_with_one_line(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--config", str(config), "channel", "create"]
    assert main([*args, "x", "--staff", "alice", "--tag", "无斜杠"]) == 1
    assert main([*args, "x", "--staff", "alice", "--state", "s" * 31]) == 1
    assert main([*args, "x", "--staff", "alice", "--state", "dup"]) == 0
    assert main([*args, "y", "--staff", "alice", "--state", "dup"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "组名/标签名" in err
    assert "state" in err


@pytest.fixture
def live(db_url: str, simulator: Simulator) -> Iterator[LiveServer]:
    settings = settings_from_mapping(base_config(db_url, api_base=simulator.api_base), environ={})
    server = LiveServer(settings, jobs=True).start()
    simulator.callback_url = server.url + "/wecom/callback"
    for u in ("alice", "bob", "carol"):
        simulator.add_staff(u, u.title())
    yield server
    server.stop()


def test_admin_api_channels(live: LiveServer, simulator: Simulator) -> None:
    api = f"{live.url}/api/channels"
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert requests.get(api, timeout=5).status_code == 401
    body = {
        "name": "直播间",
        "staff": ["alice"],
        "tags": ["来源/直播"],
        "welcome": "欢迎 {name}",
        "attachments": [{"type": "link", "title": "福利", "url": "https://example.com/x"}],
        "skip_verify": False,
    }
    resp = requests.post(api, json=body, headers=auth, timeout=10)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["state"]
    assert created["config_id"]
    assert created["qr_code"]
    assert created["attachments"][0]["link"]["title"] == "福利"
    assert requests.post(api, json=body, headers=auth, timeout=10).status_code == 422

    scan = simulator.scan(created["state"])
    wait_for(lambda: requests.get(f"{api}/直播间", headers=auth, timeout=5).json()["scans"] == 1)
    shown = requests.get(f"{api}/直播间", headers=auth, timeout=5).json()
    assert (shown["scans"], shown["adds"], shown["lost"]) == (1, 1, 0)
    assert simulator.relation_tags(scan.userid, scan.external_userid)
    simulator.customer_deletes_staff(scan.external_userid, scan.userid)
    wait_for(lambda: requests.get(f"{api}/直播间", headers=auth, timeout=5).json()["lost"] == 1)

    resp = requests.patch(
        f"{api}/直播间", json={"staff": ["alice", "bob"]}, headers=auth, timeout=10
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["qr_code_changed"] is True  # one member → several: a new contact way
    way = _way(simulator, created["state"])
    assert (way.type, way.user, way.skip_verify) == (2, ["alice", "bob"], False)
    assert created["config_id"] not in simulator.contact_ways

    listed = requests.get(api, headers=auth, timeout=5).json()["channels"]
    assert [c["name"] for c in listed] == ["直播间"]
    assert requests.delete(f"{api}/直播间", headers=auth, timeout=10).status_code == 204
    assert requests.get(f"{api}/直播间", headers=auth, timeout=5).status_code == 404


def test_daily_cap_rotates_staff_and_backups_step_in(
    live: LiveServer, simulator: Simulator
) -> None:
    rt = live.runtime
    channel = live_codes.create(
        live_codes.ChannelSpec(name="限流", staff=("alice", "bob"), daily_cap=1, backup=("carol",)),
        db=rt.db,
        wecom=rt.wecom,
    )
    state = channel.state
    with rt.db.read() as session:
        channel_id = lookup.get("限流", session=session).id
    assert _way(simulator, state).user == ["alice", "bob"]

    first = simulator.scan(state)
    wait_for(lambda: _way(simulator, state).user == ["bob"], what="alice taken off")
    second = simulator.scan(state)
    assert {first.userid, second.userid} == {"alice", "bob"}
    wait_for(lambda: _way(simulator, state).user == ["carol"], what="backup steps in")
    third = simulator.scan(state)
    assert third.userid == "carol"

    def scans() -> int:
        with rt.db.read() as session:
            return lookup.get("限流", session=session).scans

    wait_for(lambda: scans() == 3, what="third scan processed")

    # The next day: yesterday's adds no longer count and everyone is back on the code.
    yesterday = utcnow() - timedelta(days=1)
    with rt.db.write() as session:
        session.execute(update(FollowRelation).values(added_at=yesterday))
        session.execute(
            update(ChannelStaff)
            .where(ChannelStaff.paused_on.is_not(None))
            .values(paused_on=yesterday.astimezone(rt.settings.tz).date())
        )
    channel_jobs._step(rt)
    assert _way(simulator, state).user == ["alice", "bob"]
    with rt.db.read() as session:
        view = lookup.view(lookup.get("限流", session=session), session=session, tz=rt.settings.tz)
    assert view.paused == ()
    assert channel_id


def test_config_channels_are_reconciled_at_start(db_url: str, simulator: Simulator) -> None:
    simulator.add_staff("alice")
    cfg = base_config(db_url, api_base=simulator.api_base)
    cfg["channels"] = [
        {
            "name": "官网",
            "staff": ["alice"],
            "tags": ["来源/官网"],
            "state": "site",
            "welcome": "hi",
        }
    ]
    settings = settings_from_mapping(cfg, environ={})
    server = LiveServer(settings, jobs=True).start()
    try:
        wait_for(lambda: any(w.state == "site" for w in simulator.contact_ways.values()))
        rt = server.runtime
        wait_for(lambda: channel_jobs.reconcile_once(rt) == {"官网": "checked"})
        # Someone deleted the live code behind our back: it is created again.
        simulator.state.contact_ways.clear()
        assert channel_jobs.reconcile_once(rt) == {"官网": "recreated"}
        assert _way(simulator, "site").user == ["alice"]
        with rt.db.read() as session:
            assert lookup.get("官网", session=session).source == "config"
    finally:
        server.stop()


def test_creating_a_channel_does_not_hold_up_callbacks(
    live: LiveServer, simulator: Simulator
) -> None:
    # WeCom answers add_contact_way slowly; callbacks must still be acknowledged at once
    # (on SQLite a write transaction held across the call would block them).
    simulator.inject_stall("externalcontact/add_contact_way", 1.5)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    body = {"name": "慢渠道", "staff": ["alice"], "tags": ["来源/慢"]}
    with ThreadPoolExecutor(max_workers=1) as pool:
        creating = pool.submit(
            requests.post, f"{live.url}/api/channels", json=body, headers=auth, timeout=10
        )
        wait_for(
            lambda: simulator.calls.get("externalcontact/add_contact_way") == 1,
            what="the API call to wait on WeCom",
        )
        xml = simulator.event_xml("change_external_chat", "create", {"ChatId": "wrX"})
        delivery = simulator.post_callback(xml)[0]
        # Acknowledged while add_contact_way was still stalled: WeCom had not answered yet.
        answered_before_ack = simulator.calls.get(("externalcontact/add_contact_way", 0), 0)
        assert creating.result().status_code == 201
    assert delivery.status == 200
    assert answered_before_ack == 0
    assert simulator.calls.get("externalcontact/add_contact_way") == 1, simulator.calls

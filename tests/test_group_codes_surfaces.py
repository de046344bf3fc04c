"""Group live codes (群活码) beyond the CLI: the admin API, `[[channels]]` with `groups`
(applied at start, checked by check-config) and the console's 渠道活码 pages."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import Channel, GroupChat
from bot.sync import run_sync
from handlers.app import create_app
from jobs import channels as channel_jobs
from tagbot.cli import main
from tests.support.configs import toml_text
from tests.support.console import console_settings, csrf_of, sign_in_with_token
from tests.support.corp import ADMIN_TOKEN, base_config
from tests.support.live import LiveServer
from tests.support.waiting import wait_for
from wecom_sim import Simulator

PNG = b"\x89PNG\r\n\x1a\n"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _groups(simulator: Simulator, n: int) -> list[str]:
    return [
        simulator.create_group_chat("alice", f"VIP群{i}", deliver=False).chat_id for i in range(n)
    ]


def _config_text(cfg: dict[str, Any]) -> str:
    """Render a config with `[[channels]]` (JSON values are TOML values here)."""
    plain = {k: v for k, v in cfg.items() if k != "channels"}
    blocks = [
        "[[channels]]\n"
        + "".join(f"{k} = {json.dumps(v, ensure_ascii=False)}\n" for k, v in c.items())
        for c in cfg.get("channels", ())
    ]
    return toml_text(plain) + "\n" + "\n".join(blocks)


def _ways_by_state(simulator: Simulator) -> dict[str, Any]:
    return {w.state: w for w in simulator.join_ways.values()}


@pytest.fixture
def live(db_url: str, simulator: Simulator) -> Iterator[LiveServer]:
    simulator.add_staff("alice", "Alice")
    settings = settings_from_mapping(base_config(db_url, api_base=simulator.api_base), environ={})
    server = LiveServer(settings, jobs=False).start()
    yield server
    server.stop()


def test_admin_api_creates_shows_updates_and_deletes_a_group_code(
    live: LiveServer, simulator: Simulator
) -> None:
    api = f"{live.url}/api/channels"
    first, second = _groups(simulator, 2)
    body = {"name": "社群", "groups": [first], "tags": ["来源/社群"], "state": "grp_api"}
    made = requests.post(api, json=body, headers=AUTH, timeout=10)
    assert made.status_code == 201, made.text
    shown = made.json()
    assert (shown["kind"], shown["groups"], shown["state"]) == ("group", [first], "grp_api")
    way = _ways_by_state(simulator)["grp_api"]
    assert (way.chat_id_list, way.config_id, way.qr_code) == (
        [first],
        shown["config_id"],
        shown["qr_code"],
    )
    listed = requests.get(api, headers=AUTH, timeout=5).json()["channels"]
    assert [(c["name"], c["kind"], c["groups"]) for c in listed] == [("社群", "group", [first])]

    patched = requests.patch(
        f"{api}/社群", json={"groups": [first, second]}, headers=AUTH, timeout=10
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["groups"] == [first, second]
    assert _ways_by_state(simulator)["grp_api"].chat_id_list == [first, second]

    calls = dict(simulator.calls)
    for bad, status in (
        ({"groups": [f"wr{i}" for i in range(6)]}, 422),
        ({"groups": []}, 422),
        ({"staff": ["alice"]}, 422),
    ):
        resp = requests.patch(f"{api}/社群", json=bad, headers=AUTH, timeout=10)
        assert resp.status_code == status, resp.text
        assert "error" in resp.json()
    refused = requests.post(
        api, json={"name": "再来", "groups": [f"wr{i}" for i in range(6)]}, headers=AUTH, timeout=10
    )
    assert refused.status_code == 422
    assert "最多关联 5 个客户群" in refused.json()["message"]
    assert simulator.calls == calls  # none of these reached WeCom

    assert requests.delete(f"{api}/社群", headers=AUTH, timeout=10).status_code == 204
    assert simulator.join_ways == {}


def test_config_group_codes_are_made_at_start_and_checked_by_check_config(
    tmp_path: Path, db_url: str, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.add_staff("alice", "Alice")
    chats = _groups(simulator, 2)
    cfg = base_config(db_url, api_base=simulator.api_base)
    cfg["channels"] = [
        {
            "name": "会员群",
            "groups": chats,
            "tags": ["来源/会员群"],
            "state": "grp_vip",
            "auto_create_room": True,
            "room_base_name": "会员群",
            "room_base_id": 3,
        }
    ]
    server = LiveServer(settings_from_mapping(cfg, environ={}), jobs=True).start()
    try:
        wait_for(lambda: "grp_vip" in _ways_by_state(simulator))
        way = _ways_by_state(simulator)["grp_vip"]
        assert (way.chat_id_list, way.auto_create_room, way.room_base_name, way.room_base_id) == (
            chats,
            1,
            "会员群",
            3,
        )
        rt = server.runtime
        wait_for(lambda: channel_jobs.reconcile_once(rt) == {"会员群": "checked"})
        simulator.state.join_ways.clear()  # deleted behind the bot's back
        assert channel_jobs.reconcile_once(rt) == {"会员群": "recreated"}
        assert _ways_by_state(simulator)["grp_vip"].chat_id_list == chats
        with rt.db.read() as session:
            channel = session.scalars(select(Channel).where(Channel.name == "会员群")).one()
            assert (channel.kind, channel.source, channel.chat_ids) == ("group", "config", chats)
        # check-config: a group the group sync does not know is named by key.
        with rt.db.write() as session:
            session.add(GroupChat(chat_id=chats[0], owner_userid="alice"))
    finally:
        server.stop()
    path = tmp_path / "config.toml"
    path.write_text(_config_text(cfg), encoding="utf-8")
    assert main(["--config", str(path), "check-config"]) == 2
    err = capsys.readouterr().err
    assert (
        f"channels[0].groups: {chats[1]} unknown or dismissed at the last group sync"
        " (客户群不存在或已解散)"
    ) in err


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ({"groups": [f"wr{i}" for i in range(6)]}, "groups"),
        ({"groups": ["wr1"], "staff": ["alice"]}, "give either staff"),
        ({}, "give either staff"),
        ({"groups": ["wr1"], "welcome": "hi"}, "has no welcome"),
        ({"groups": ["wr 1"]}, "malformed chat id"),
        ({"groups": ["wr1"], "room_base_name": "群"}, "need auto_create_room"),
    ],
    ids=["six", "both", "neither", "welcome", "malformed", "room-without-auto"],
)
def test_bad_config_group_codes_fail_check_config_by_key(
    tmp_path: Path,
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    entry: dict[str, Any],
    error: str,
) -> None:
    cfg = base_config(db_url, api_base="http://127.0.0.1:9")
    cfg["channels"] = [{"name": "会员群", **entry}]
    path = tmp_path / "config.toml"
    path.write_text(_config_text(cfg), encoding="utf-8")
    assert main(["--config", str(path), "check-config"]) == 2
    err = capsys.readouterr().err
    assert "channels" in err
    assert error in err
    assert "Traceback" not in err


# --- the console --------------------------------------------------------------------


@pytest.fixture
def console(db_url: str, simulator: Simulator) -> Iterator[Flask]:
    for userid, name in (("boss", "老板"), ("watcher", "观察员"), ("alice", "Alice")):
        simulator.add_staff(userid, name)
    app = create_app(console_settings(db_url, simulator))
    rt = app.extensions["tagbot"]
    run_sync(db=rt.db, wecom=rt.wecom)
    yield app
    rt.close()


@pytest.fixture
def admin(console: Flask) -> FlaskClient:
    web = console.test_client()
    assert sign_in_with_token(web).status_code == 303
    return web


def _token(web: FlaskClient, path: str) -> str:
    page = web.get(path)
    assert page.status_code == 200
    return csrf_of(page.get_data(as_text=True))


def test_the_console_creates_shows_edits_and_downloads_a_group_code(
    admin: FlaskClient, simulator: Simulator, db: Database
) -> None:
    first, second, third = _groups(simulator, 3)
    with db.write() as session:  # as the group sync records them, with their names
        for i, chat in enumerate((first, second, third)):
            session.add(GroupChat(chat_id=chat, name=f"VIP群{i}", owner_userid="alice"))
    form = admin.get("/admin/channels/new").get_data(as_text=True)
    assert 'name="groups"' in form
    made = admin.post(
        "/admin/channels/new",
        data={
            "csrf_token": _token(admin, "/admin/channels/new"),
            "name": "会员群活码",
            "groups": f"{first}, {second}",
            "tags": "来源/会员群",
            "create_tags": "1",
        },
    )
    assert made.status_code == 303, made.get_data(as_text=True)
    with db.read() as session:
        channel = session.scalars(select(Channel).where(Channel.name == "会员群活码")).one()
        channel_id, state, config_id = channel.id, channel.state, channel.config_id
        assert (channel.kind, channel.chat_ids, channel.source) == (
            "group",
            [first, second],
            "console",
        )
    assert _ways_by_state(simulator)[state].chat_id_list == [first, second]

    page = admin.get(f"/admin/channels/{channel_id}").get_data(as_text=True)
    assert "群活码（加入群聊）" in page
    assert "VIP群0" in page
    assert "VIP群1" in page
    assert "接待成员" not in page
    listing = admin.get("/admin/channels").get_data(as_text=True)
    assert "群活码</span>" in listing
    assert "VIP群1" in listing

    png = admin.get(f"/admin/channels/{channel_id}/qr.png?download=1")
    assert png.status_code == 200
    assert png.data.startswith(PNG)
    with urllib.request.urlopen(simulator.join_ways[str(config_id)].qr_code) as answer:
        assert png.data == answer.read()

    edit = admin.get(f"/admin/channels/{channel_id}/edit").get_data(as_text=True)
    assert 'name="groups"' in edit
    assert 'name="staff"' not in edit
    edited = admin.post(
        f"/admin/channels/{channel_id}/edit",
        data={
            "csrf_token": _token(admin, f"/admin/channels/{channel_id}/edit"),
            "groups": third,
            "tags": "来源/会员群",
        },
    )
    assert edited.status_code == 303
    assert _ways_by_state(simulator)[state].chat_id_list == [third]
    calls = dict(simulator.calls)
    six = " ".join(f"wr{i}" for i in range(6))
    refused = admin.post(
        f"/admin/channels/{channel_id}/edit",
        data={"csrf_token": _token(admin, f"/admin/channels/{channel_id}/edit"), "groups": six},
    )
    assert refused.status_code == 422
    assert "最多关联 5 个客户群" in refused.get_data(as_text=True)
    assert simulator.calls == calls

    deleted = admin.post(
        f"/admin/channels/{channel_id}/delete",
        data={
            "csrf_token": _token(admin, f"/admin/channels/{channel_id}"),
            "confirm": "会员群活码",
        },
    )
    assert deleted.status_code == 303
    assert simulator.join_ways == {}

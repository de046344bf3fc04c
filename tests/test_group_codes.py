"""Group live codes (群活码, issue 22): `channel create --group` makes a 加入群聊 join way.

Against the simulator over HTTP: the join way carries the channel's state and chat ids,
update and delete follow, and bad input is refused before any WeCom call with nothing left.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.config import load_settings
from bot.db.models import Channel, GroupChat
from bot.db.types import utcnow
from bot.runtime import Runtime
from tagbot.cli import main
from tests.support.configs import toml_text
from tests.support.corp import base_config
from tests.support.processes import run_tagbot
from wecom_sim import Simulator


@pytest.fixture
def config(tmp_path: Path, db_url: str, simulator: Simulator) -> Path:
    """A config on the simulator whose corp has alice, owner of no groups yet."""
    path = tmp_path / "config.toml"
    path.write_text(toml_text(base_config(db_url, api_base=simulator.api_base)), encoding="utf-8")
    simulator.add_staff("alice", "Alice")
    return path


def _groups(simulator: Simulator, n: int) -> list[str]:
    return [
        simulator.create_group_chat("alice", f"VIP群{i}", deliver=False).chat_id for i in range(n)
    ]


def _store_groups(config: Path, chat_ids: list[str], *, dismissed: tuple[str, ...] = ()) -> None:
    """Record the groups as the group sync would (group_chats rows)."""
    rt = Runtime(load_settings(config))
    try:
        with rt.db.write() as session:
            for chat_id in chat_ids:
                gone = utcnow() if chat_id in dismissed else None
                session.add(GroupChat(chat_id=chat_id, owner_userid="alice", dismissed_at=gone))
    finally:
        rt.close()


def _channels(config: Path) -> list[tuple[str, str, list[str], str | None]]:
    rt = Runtime(load_settings(config))
    try:
        with rt.db.read() as session:
            rows = session.execute(
                select(Channel.name, Channel.kind, Channel.chat_ids, Channel.config_id)
            ).all()
            return [(n, k, list(c), cid) for n, k, c, cid in rows]
    finally:
        rt.close()


def _channel_count(config: Path) -> int:
    rt = Runtime(load_settings(config))
    try:
        with rt.db.read() as session:
            return int(session.scalar(select(func.count()).select_from(Channel)) or 0)
    finally:
        rt.close()


def _cli(config: Path, *args: str) -> int:
    return main(["--config", str(config), "channel", *args])


def _made_in_wecom(simulator: Simulator) -> tuple[int, int]:
    tags = sum(len(tags) for tags in simulator.tag_catalogue().values())
    return tags, len(simulator.join_ways)


def test_create_update_delete_keep_the_join_way_in_line(
    config: Path, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second, third = _groups(simulator, 3)
    assert (
        _cli(config, "create", "社群拉新", "--group", f"{first},{second}", "--tag", "来源/社群")
        == 0
    )
    out = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines() if "=" in line)
    [(config_id, way)] = simulator.join_ways.items()
    assert out["config_id"] == config_id
    assert (way.scene, way.chat_id_list, way.state) == (2, [first, second], out["state"])
    assert out["qr_code"] == way.qr_code != ""  # from get_join_way: add answers config_id only
    assert (way.remark, way.auto_create_room) == ("社群拉新", 0)
    assert simulator.tag_catalogue() == {
        "来源": {"社群": simulator.tag_catalogue()["来源"]["社群"]}
    }
    assert _channels(config) == [("社群拉新", "group", [first, second], config_id)]

    assert _cli(config, "list") == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0] == "名称\t类型\tstate\t接待成员/客户群\t扫码\t添加\t流失"
    assert listed[1] == f"社群拉新\tgroup\t{out['state']}\t{first},{second}\t0\t0\t0"

    # Groups and auto rooms change the join way in place: same config_id, same QR code.
    args = [
        "--group",
        third,
        "--auto-create-room",
        "--room-base-name",
        "VIP群",
        "--room-base-id",
        "7",
    ]
    assert _cli(config, "update", "社群拉新", *args) == 0
    way = simulator.join_ways[config_id]
    assert (way.chat_id_list, way.state, way.qr_code) == ([third], out["state"], out["qr_code"])
    assert (way.auto_create_room, way.room_base_name, way.room_base_id) == (1, "VIP群", 7)
    calls = dict(simulator.calls)
    assert _cli(config, "update", "社群拉新", "--tag", "来源/VIP群") == 0  # tags: no join way call
    assert simulator.calls.get("externalcontact/groupchat/update_join_way") == calls.get(
        "externalcontact/groupchat/update_join_way"
    )
    assert "来源/VIP群" in capsys.readouterr().out
    # A staff-code option on a group code is refused.
    assert _cli(config, "update", "社群拉新", "--staff", "alice") == 1

    assert _cli(config, "delete", "社群拉新", "--yes") == 0
    assert simulator.join_ways == {}
    assert _channels(config) == []


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ("--group", "{six}"),
            "error: 群活码最多关联 5 个客户群（给了 6 个） / a group code leads to at most 5 groups"
            " (6 given)",
        ),
        (("--group", ""), "error: 群活码须关联 1–5 个客户群 / --group needs 1-5 chat ids"),
        (("--group", " , "), "error: 群活码须关联 1–5 个客户群 / --group needs 1-5 chat ids"),
        (
            ("--group", "{one},wr ghost!"),
            "error: 客户群 ID 格式不对 / malformed chat id: 'wr ghost!' (字母、数字、_- /"
            " letters, digits, _-; see `tagbot groups` or the group sync)",
        ),
        (
            ("--group", "{one},wrGhost"),
            "error: 客户群不存在或已解散 / customer groups unknown or dismissed: wrGhost"
            " — 请先同步客户群 / sync the groups first, then check the chat ids",
        ),
        (
            ("--group", "{dismissed}"),
            "error: 客户群不存在或已解散 / customer groups unknown or dismissed: {dismissed}"
            " — 请先同步客户群 / sync the groups first, then check the chat ids",
        ),
        (
            ("--group", "{one}", "--auto-create-room", "--room-base-name", "群" * 41),
            "error: 自动建群群名前缀最多 40 字 / room base name: at most 40 characters",
        ),
        (
            ("--group", "{one}", "--room-base-name", "VIP群"),
            "error: --room-base-name / --room-base-id 仅在 --auto-create-room 时有效"
            " / only with --auto-create-room",
        ),
        (
            ("--group", "{one}", "--welcome", "你好"),
            "error: 群活码没有接待成员、欢迎语、每日上限 / a group code takes no --welcome",
        ),
        (
            ("--group", "{one}", "--staff", "alice"),
            "error: 请给出 --staff（员工活码）或 --group（群活码）之一 / give either --staff or"
            " --group",
        ),
        (
            ("--group", "{one}", "--state", "s" * 31),
            "error: state 'sssssssssssssssssssssssssssssss' 须为 1–30 个字母、数字、_-. / must be"
            " 1-30 letters, digits, _-.",
        ),
        (
            ("--group", "{one}", "--tag", "来源/" + "群" * 31),
            None,
        ),
    ],
    ids=[
        "six",
        "empty",
        "blank",
        "malformed",
        "unknown",
        "dismissed",
        "room-name",
        "room-without-auto",
        "welcome",
        "both-kinds",
        "state",
        "tag",
    ],
)
def test_bad_input_is_refused_before_any_wecom_call(
    config: Path,
    simulator: Simulator,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    error: str | None,
) -> None:
    chats = _groups(simulator, 7)
    _store_groups(config, chats, dismissed=(chats[6],))
    names = {"six": ",".join(chats[:6]), "one": chats[0], "dismissed": chats[6]}
    calls = dict(simulator.calls)
    assert _cli(config, "create", "社群拉新", *(a.format(**names) for a in args)) == 1
    [line] = capsys.readouterr().err.splitlines()
    if error is None:
        assert line.startswith("error: ")
    else:
        assert line == error.format(**names)
    assert simulator.calls == calls  # not one WeCom call
    assert _made_in_wecom(simulator) == (0, 0)
    assert _channel_count(config) == 0


def test_without_a_group_sync_each_group_is_read_from_wecom_and_nothing_is_made(
    config: Path, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    [chat] = _groups(simulator, 1)
    assert (
        _cli(config, "create", "社群拉新", "--group", f"{chat},wrGhost", "--tag", "来源/社群") == 1
    )
    assert capsys.readouterr().err.splitlines() == [
        "error: 客户群不存在或已解散 / customer groups unknown or dismissed: wrGhost"
        " — 请先同步客户群 / sync the groups first, then check the chat ids"
    ]
    assert simulator.calls.get("externalcontact/groupchat/get") == 2  # reads only
    assert simulator.calls.get("externalcontact/groupchat/add_join_way", 0) == 0
    assert _made_in_wecom(simulator) == (0, 0)
    assert _channel_count(config) == 0
    # Known groups go through.
    assert _cli(config, "create", "社群拉新", "--group", chat) == 0
    assert len(simulator.join_ways) == 1


def test_update_to_a_bad_group_changes_nothing(
    config: Path, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    chats = _groups(simulator, 2)
    _store_groups(config, chats)
    assert _cli(config, "create", "社群拉新", "--group", chats[0]) == 0
    [(config_id, before)] = simulator.join_ways.items()
    calls = dict(simulator.calls)
    for bad in ("wrGhost", ",".join([*chats, "a", "b", "c", "d"]), ""):
        assert _cli(config, "update", "社群拉新", "--group", bad) == 1
    assert simulator.calls == calls
    assert simulator.join_ways == {config_id: before}
    assert _channels(config) == [("社群拉新", "group", [chats[0]], config_id)]


@pytest.mark.slow
def test_the_cli_from_the_outside(config: Path, simulator: Simulator) -> None:
    """An operator's shell: exit codes, stdout lines, one error line and no traceback."""
    chats = _groups(simulator, 2)
    made = run_tagbot(
        "--config", str(config), "channel", "create", "社群拉新", "--group", ",".join(chats),
        "--state", "grp_spring", cwd=config.parent,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    [config_id] = simulator.join_ways
    qr = simulator.join_ways[config_id].qr_code
    assert made.stdout.splitlines() == [
        "群活码已创建 / group code created: 社群拉新",
        "state=grp_spring",
        f"config_id={config_id}",
        f"qr_code={qr}",
        f"groups={','.join(chats)}",
    ]
    shown = run_tagbot("--config", str(config), "channel", "show", "社群拉新", cwd=config.parent)
    assert shown.returncode == 0, shown.stderr
    assert "  类型 / kind: 群活码 group" in shown.stdout.splitlines()
    assert f"  客户群:     {', '.join(chats)}" in shown.stdout.splitlines()
    six = ",".join(f"wrChat{i}" for i in range(6))
    bad = run_tagbot(
        "--config", str(config), "channel", "create", "再来", "--group", six, cwd=config.parent
    )
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert bad.stderr.splitlines() == [
        "error: 群活码最多关联 5 个客户群（给了 6 个） / a group code leads to at most 5 groups"
        " (6 given)"
    ]
    assert len(simulator.join_ways) == 1

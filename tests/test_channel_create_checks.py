"""`channel create` checks what it can before any WeCom call, and a refusal leaves nothing.

Before, staff unknown to WeCom got `60111 userid not found` after the channel's tag had
already been made in WeCom.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.channels import live_codes
from bot.config import load_settings
from bot.errors import WeComError
from bot.runtime import Runtime
from bot.sync import run_sync
from bot.tags.catalogue import TagPath
from tagbot.cli import main
from tests.support.configs import toml_text
from tests.support.corp import base_config
from wecom_sim import Simulator


@pytest.fixture
def config(tmp_path: Path, db_url: str, simulator: Simulator) -> Path:
    """A config on the simulator, whose corp has alice and bob (not synced yet)."""
    path = tmp_path / "config.toml"
    path.write_text(toml_text(base_config(db_url, api_base=simulator.api_base)), encoding="utf-8")
    simulator.add_staff("alice", "Alice")
    simulator.add_staff("bob", "Bob")
    return path


def _sync(config: Path) -> None:
    rt = Runtime(load_settings(config))
    try:
        run_sync(db=rt.db, wecom=rt.wecom)
    finally:
        rt.close()


def _made_in_wecom(simulator: Simulator) -> tuple[int, int]:
    """Count the tags and contact ways the simulated corp holds."""
    tags = sum(len(tags) for tags in simulator.tag_catalogue().values())
    return tags, len(simulator.contact_ways)


def _create(config: Path, *args: str) -> int:
    return main(["--config", str(config), "channel", "create", "春季活动", *args])


def test_before_any_sync_create_says_to_run_sync_and_calls_no_wecom(
    config: Path, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _create(config, "--staff", "alice", "--tag", "来源/春季活动") == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: 还没有同步过成员，请先运行 `tagbot sync` / no staff known yet:"
        " run `tagbot sync` first, then `tagbot staff list`"
    ]
    assert _made_in_wecom(simulator) == (0, 0)
    assert simulator.calls == {}


def test_staff_unknown_to_the_sync_are_named_and_nothing_is_made(
    config: Path, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    _sync(config)
    capsys.readouterr()  # the sync's log line
    before = _made_in_wecom(simulator)
    calls = dict(simulator.calls)
    code = _create(config, "--staff", "alice,ghost", "--backup", "Bob,nobody", "--tag", "来源/春")
    assert code == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: 成员不在最近一次同步的客户联系成员中 / staff unknown to WeCom's last sync:"
        " ghost, nobody — 请运行 / run `tagbot sync`, then `tagbot staff list`"
    ]
    assert _made_in_wecom(simulator) == before
    assert simulator.calls == calls  # not one WeCom call
    # The same channel with known staff goes through (userids compare case-blind).
    assert _create(config, "--staff", "alice", "--backup", "Bob", "--tag", "来源/春") == 0
    assert _made_in_wecom(simulator) == (before[0] + 1, before[1] + 1)


@pytest.mark.parametrize(
    "args",
    [
        ("--staff", "alice", "--tag", "来" * 31 + "/春"),
        ("--staff", "alice", "--tag", "来源/" + "春" * 31),
        ("--staff", "alice", "--state", "s" * 31),
        ("--staff", "alice", "--welcome", "欢" * 1334),  # 4,002 bytes
        ("--staff", "alice", *sum((("--attach", f"image:MEDIA{i}") for i in range(10)), ())),
    ],
    ids=["group-name", "tag-name", "state", "welcome", "attachments"],
)
def test_over_wecom_limits_is_refused_before_any_wecom_call(
    config: Path, simulator: Simulator, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    _sync(config)
    capsys.readouterr()  # the sync's log line
    calls = dict(simulator.calls)
    assert _create(config, *args) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ")
    assert simulator.calls == calls
    assert _made_in_wecom(simulator) == (0, 0)


def test_a_contact_way_wecom_refuses_leaves_no_tag_behind(
    config: Path, simulator: Simulator
) -> None:
    """Whoever creates (CLI, API, config at start): WeCom's refusal comes before any tag."""
    rt = Runtime(load_settings(config))
    try:
        spec = live_codes.ChannelSpec(
            name="春季活动", staff=("ghost",), tags=(TagPath("来源", "春季活动"),)
        )
        with pytest.raises(WeComError) as info:
            live_codes.create(spec, db=rt.db, wecom=rt.wecom)
        assert info.value.errcode == 60111
    finally:
        rt.close()
    assert _made_in_wecom(simulator) == (0, 0)
    assert simulator.calls.get("externalcontact/add_corp_tag", 0) == 0

"""Display names for staff: `[staff]` in the config or its env override, shown by `tagbot staff list`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import settings_from_mapping
from handlers.app import create_app
from tagbot.cli import main
from tests.support.configs import toml_text
from tests.support.corp import ADMIN_TOKEN, base_config
from wecom_sim import Simulator


def test_staff_list_shows_what_welcomes_call_each_member(
    tmp_path: Path,
    db_url: str,
    simulator: Simulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for userid in ("chenjing", "liuyang", "wangfang"):
        simulator.add_staff(userid, "")  # WeCom lists userids only
    data = base_config(db_url, api_base=simulator.api_base)
    data["staff"] = {"liuyang": "刘洋", "zhaolei": "赵磊"}
    config = tmp_path / "config.toml"
    config.write_text(toml_text(data), encoding="utf-8")
    monkeypatch.setenv("TAGBOT_STAFF__CHENJING", "陈静")
    assert main(["--config", str(config), "sync"]) == 0
    capsys.readouterr()
    assert main(["--config", str(config), "staff", "list"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert rows[1:5] == [
        ["chenjing", "—", "陈静", "陈静", "在职"],
        ["liuyang", "—", "刘洋", "刘洋", "在职"],
        ["wangfang", "—", "—", "wangfang", "在职"],
        ["zhaolei", "—", "赵磊", "赵磊", "未同步 / not synced"],
    ]
    assert rows[5][0].startswith("1 名员工没有姓名")


def test_bad_staff_entries_are_refused_by_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = base_config("sqlite:///x.db")
    data["staff"] = {"liu yang": "刘洋", "chenjing": "  "}
    config = tmp_path / "config.toml"
    config.write_text(toml_text(data), encoding="utf-8")
    assert main(["--config", str(config), "check-config"]) == 2
    problems = [
        line[4:] for line in capsys.readouterr().err.splitlines() if line.startswith("  - ")
    ]
    assert problems == [
        f"staff.liu yang: not a WeCom userid (1-64 letters, digits or _-@., starting with a"
        f" letter or digit) [in {config}]",
        f"staff.chenjing: the display name must be 1 to 64 characters [in {config}]",
    ]


def test_customer_show_and_the_api_name_staff_alike(
    tmp_path: Path, db_url: str, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.add_staff("liuyang", "")  # WeCom lists userids only
    simulator.add_staff("wangfang", "")
    ext = simulator.add_relation("liuyang", name="王五")
    simulator.add_relation("wangfang", ext)
    data = base_config(db_url, api_base=simulator.api_base)
    data["staff"] = {"liuyang": "刘洋"}
    config = tmp_path / "config.toml"
    config.write_text(toml_text(data), encoding="utf-8")
    assert main(["--config", str(config), "sync"]) == 0
    capsys.readouterr()
    assert main(["--config", str(config), "customer", "show", ext]) == 0
    out = capsys.readouterr().out
    assert "员工 刘洋（liuyang）" in out
    assert "员工 wangfang（wangfang）" in out

    app = create_app(settings_from_mapping(data, environ={}))
    try:
        body = (
            app.test_client()
            .get(f"/api/customers/{ext}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            .json
        )
    finally:
        app.extensions["tagbot"].close()
    assert body is not None
    names = {r["staff_userid"]: r["staff_name"] for r in body["relations"]}
    assert names == {"liuyang": "刘洋", "wangfang": "wangfang"}  # as `customer show` says

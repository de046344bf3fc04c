"""`tagbot check-config` flags the example's values in `[[channels]]` by key.

Config channels are created in WeCom when serve or worker starts: the example's 公众号文章,
with its https://example.com/welcome link and staff zhangsan and lisi, went live silently.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.runtime import Runtime
from bot.sync import run_sync
from tagbot.cli import main
from tests.support.configs import filled_in_example, toml_text
from tests.support.corp import base_config
from wecom_sim import Simulator


def _config(tmp_path: Path, db_url: str, simulator: Simulator, staff: str) -> Path:
    """Write a config on the simulator with one channel answered by `staff` (TOML list)."""
    path = tmp_path / "config.toml"
    channel = f'[[channels]]\nname = "公众号文章"\nstaff = {staff}\nbackup = ["alice"]\n'
    path.write_text(
        toml_text(base_config(db_url, api_base=simulator.api_base)) + channel, encoding="utf-8"
    )
    return path


def _lines(text: str, mark: str) -> list[str]:
    return [line[4:] for line in text.splitlines() if line.startswith(f"  {mark} ")]


def test_the_example_channel_link_is_flagged_by_key_and_no_database_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = filled_in_example(tmp_path, monkeypatch)
    assert main(["--config", str(config), "check-config"]) == 0
    err = capsys.readouterr().err
    assert "注意 / 2 warning(s):" in err
    assert _lines(err, "!") == [
        "channels[0].attachments[0].url: https://example.com/welcome is an example link"
        " (示例链接) — put the real one, or delete the channel '公众号文章': config channels"
        " are created in WeCom when serve or worker starts",
        "channels: staff not checked against WeCom (未核对接待成员) — run `tagbot init-db`,"
        " then `tagbot sync`",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_staff_the_sync_does_not_know_fail_check_config_by_key(
    tmp_path: Path, db_url: str, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.add_staff("alice")
    config = _config(tmp_path, db_url, simulator, '["zhangsan", "lisi"]')
    rt = Runtime(load_settings(config))
    run_sync(db=rt.db, wecom=rt.wecom)
    rt.close()
    capsys.readouterr()
    assert main(["--config", str(config), "check-config"]) == 2
    captured = capsys.readouterr()
    assert "config OK" not in captured.out
    assert "配置有误 / 1 problem(s):" in captured.err
    assert _lines(captured.err, "-") == [
        "channels[0].staff: zhangsan, lisi not among WeCom's staff at the last sync (成员不存在)"
        " — run `tagbot sync`, then `tagbot staff list`"
    ]
    # Staff the sync listed pass, with nothing to warn about.
    config = _config(tmp_path, db_url, simulator, '["ALICE"]')
    assert main(["--config", str(config), "check-config"]) == 0
    captured = capsys.readouterr()
    assert "config OK" in captured.out
    assert captured.err == ""


def test_before_any_sync_check_config_says_to_run_it(
    tmp_path: Path, db_url: str, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, db_url, simulator, '["zhangsan"]')
    assert main(["--config", str(config), "check-config"]) == 0
    assert _lines(capsys.readouterr().err, "!") == [
        "channels: staff not checked against WeCom (未核对接待成员) — no sync yet: run"
        " `tagbot sync`, then `tagbot staff list`"
    ]

"""Config loads into frozen settings, takes env overrides, hides secrets, lists every problem."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pydantic
import pytest

from bot.config import load_settings, settings_from_mapping
from bot.errors import ConfigError
from tagbot.cli import main
from tests.conftest import base_config

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_is_valid() -> None:
    settings = load_settings(ROOT / "config.example.toml", environ={})
    assert settings.wecom.agent_id == 1000002
    assert settings.channels[0].tags == ("来源渠道/公众号", "意向/待跟进")
    assert settings.tiering.dimensions[0].tiers[0].tag == "高价值"


def test_environment_overrides_nested_keys() -> None:
    env = {"TAGBOT_WECOM__SECRET": "from-env", "TAGBOT_SERVER__PORT": "9123"}
    settings = settings_from_mapping(base_config("sqlite:///x.db"), environ=env)
    assert settings.wecom.secret.get_secret_value() == "from-env"
    assert settings.server.port == 9123


def test_settings_are_frozen_and_secrets_hidden() -> None:
    settings = settings_from_mapping(base_config("sqlite:///x.db"), environ={})
    with pytest.raises(pydantic.ValidationError):
        settings.wecom.corp_id = "other"  # type: ignore[misc]
    shown = repr(settings) + str(settings.model_dump())
    for secret in ("test-secret-of-the-self-built-app", "tagbotTestToken", "test-admin-token"):
        assert secret not in shown


def test_every_problem_is_reported_by_key() -> None:
    data = base_config("mysql://nope")
    data["wecom"]["encoding_aes_key"] = "x" * 40
    del data["wecom"]["corp_id"]
    data["tiering"] = {"schedule": "not a cron"}
    data["server"]["typo_key"] = 1
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(data, environ={})
    problems = "\n".join(info.value.problems)
    assert "wecom.encoding_aes_key: must be exactly 43" in problems
    assert "(got 40 characters)" in problems
    assert "wecom.corp_id: is required" in problems
    assert "database.url:" in problems
    assert "tiering.schedule: not a valid cron expression" in problems
    assert "server.typo_key: unknown key" in problems
    assert len(info.value.problems) == 5


def test_duplicate_channel_states_are_refused() -> None:
    data = base_config("sqlite:///x.db")
    data["channels"] = [
        {"name": "a", "staff": ["u1"], "state": "s1"},
        {"name": "b", "staff": ["u1"], "state": "s1"},
    ]
    with pytest.raises(ConfigError, match=r"channels\[1\]\.state: duplicate state"):
        settings_from_mapping(data, environ={})


def test_check_config_cli_lists_problems_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[wecom]\ncorp_id = ""\nsecret = "s"\nagent_id = 1\ntoken = "t"\n'
        'encoding_aes_key = "short"\n[server]\nadmin_token = "0123456789abcdef"\n'
        '[tiering]\nschedule = "99 * * * *"\n',
        encoding="utf-8",
    )
    code = main(["--config", str(config), "check-config"])
    err = capsys.readouterr().err
    assert code == 2
    assert "wecom.corp_id:" in err
    assert "wecom.encoding_aes_key:" in err
    assert "tiering.schedule:" in err
    assert "Traceback" not in err


def test_check_config_cli_accepts_the_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(ROOT / "config.example.toml", tmp_path / "config.toml")
    code = main(["--config", str(tmp_path / "config.toml"), "check-config"])
    out = capsys.readouterr().out
    assert code == 0
    assert "config OK" in out
    assert "replace-with-the-app-secret" not in out


def test_missing_and_malformed_files_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(tmp_path / "absent.toml"), "init-db"]) == 2
    assert "config file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[wecom\n", encoding="utf-8")
    assert main(["--config", str(bad), "init-db"]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_unreadable_config_files_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gbk = tmp_path / "gbk.toml"
    gbk.write_bytes('[wecom]\ncorp_id = "企业"\n'.encode("gbk"))
    for path, said in ((tmp_path, "cannot read"), (gbk, "not UTF-8")):
        assert main(["--config", str(path), "sync"]) == 2
        err = capsys.readouterr().err
        assert said in err
        assert "unexpected" not in err
        with pytest.raises(ConfigError):
            load_settings(path)


def test_init_db_is_idempotent_from_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    data = base_config(db_url)
    config = tmp_path / "config.toml"
    config.write_text(_to_toml(data), encoding="utf-8")
    assert main(["--config", str(config), "init-db"]) == 0
    assert main(["--config", str(config), "init-db"]) == 0
    assert "already at" in capsys.readouterr().out


def _to_toml(data: dict[str, dict[str, object]]) -> str:
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, str):
                lines.append(f'{key} = "{value}"')
            elif isinstance(value, bool):
                lines.append(f"{key} = {str(value).lower()}")
            else:
                lines.append(f"{key} = {value}")
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # fail here, not in the CLI, if the helper is wrong
    return text


def test_an_unreachable_database_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = base_config("postgresql+psycopg://nobody@127.0.0.1:9/none")
    config = tmp_path / "config.toml"
    config.write_text(_to_toml(data), encoding="utf-8")
    assert main(["--config", str(config), "init-db"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot use the database:")
    assert "Traceback" not in err

"""Config loads into frozen settings, takes env overrides, hides secrets, lists every problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydantic
import pytest

from bot.config import load_settings, settings_from_mapping
from bot.errors import ConfigError
from tagbot.cli import main
from tests.support.configs import FILLED_IN, filled_in_example, toml_text
from tests.support.corp import base_config

ROOT = Path(__file__).resolve().parent.parent


# What an operator pastes over config.example.toml's placeholders, as environment variables.


def test_example_config_is_valid_once_its_placeholders_are_filled_in() -> None:
    settings = load_settings(ROOT / "config.example.toml", environ=FILLED_IN)
    assert settings.wecom.agent_id == 1000002
    assert settings.channels[0].tags == ("来源渠道/公众号", "意向/待跟进")
    assert settings.tiering.dimensions[0].tiers[0].tag == "高价值"
    assert settings.staff == {"zhangsan": "张三", "lisi": "李四"}


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


def test_check_config_cli_refuses_the_unchanged_example_by_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(ROOT / "config.example.toml", tmp_path / "config.toml")
    code = main(["--config", str(tmp_path / "config.toml"), "check-config"])
    captured = capsys.readouterr()
    assert code == 2
    assert "config OK" not in captured.out
    problems = [line for line in captured.err.splitlines() if line.startswith("  - ")]
    keys = [line[4:].split(":")[0] for line in problems]
    assert keys == [
        "wecom.corp_id",
        "wecom.secret",
        "wecom.token",
        "wecom.encoding_aes_key",
        "server.admin_token",
    ]
    assert all("still the example's placeholder" in line for line in problems)
    assert (
        "wecom.secret: still the example's placeholder — paste the secret of the self-built"
        " app (应用管理 → 自建应用 → Secret)" in captured.err
    )
    assert "replace-with-the-app-secret" not in captured.err


def test_check_config_cli_accepts_the_example_with_real_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code = main(["--config", str(filled_in_example(tmp_path, monkeypatch)), "check-config"])
    out = capsys.readouterr().out
    assert code == 0
    assert "config OK" in out
    assert FILLED_IN["TAGBOT_WECOM__SECRET"] not in out


def test_problems_say_whether_the_value_came_from_the_file_or_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = base_config("sqlite:///x.db")
    data["server"]["port"] = 70000
    del data["wecom"]["corp_id"]
    config = tmp_path / "config.toml"
    config.write_text(toml_text(data), encoding="utf-8")
    monkeypatch.setenv("TAGBOT_WECOM__ENCODING_AES_KEY", "short")
    monkeypatch.setenv("TAGBOT_SERVER__ADMN_TOKEN", "a typo in the variable's name")
    monkeypatch.chdir(tmp_path)
    code = main(["check-config"])  # ./config.toml, as most operators run it
    err = capsys.readouterr().err
    assert code == 2
    problems = sorted(line[4:] for line in err.splitlines() if line.startswith("  - "))
    assert problems == [
        "server.admn_token: unknown key [from TAGBOT_SERVER__ADMN_TOKEN]",
        "server.port: Input should be less than or equal to 65535 [in config.toml]",
        "wecom.corp_id: is required [neither in config.toml nor TAGBOT_WECOM__CORP_ID]",
        "wecom.encoding_aes_key: must be exactly 43 letters or digits (got 5 characters)"
        " [from TAGBOT_WECOM__ENCODING_AES_KEY]",
    ]


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1+", "character 43 of 43 is '+' (U+002B)"),
        ("a1B2c3D4e5F6g7H8i9J0 1L2m3N4o5P6q7R8s9T0u1V", "character 21 of 43 is a space"),
        ("a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1V\n", "character 44 of 44 is U+000A"),
        ("a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1Ｖ", "character 43 of 43 is 'Ｖ' (U+FF36)"),
    ],
)
def test_a_bad_character_in_the_aes_key_is_named_with_its_position(key: str, said: str) -> None:
    data = base_config("sqlite:///x.db")
    data["wecom"]["encoding_aes_key"] = key
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(data, environ={})
    assert info.value.problems == [
        f"wecom.encoding_aes_key: must be exactly 43 letters or digits: {said},"
        " not a letter or digit"
    ]


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
    config.write_text(toml_text(data), encoding="utf-8")
    assert main(["--config", str(config), "init-db"]) == 0
    assert main(["--config", str(config), "init-db"]) == 0
    assert "already at" in capsys.readouterr().out


def test_an_unreachable_database_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = base_config("postgresql+psycopg://nobody@127.0.0.1:9/none")
    config = tmp_path / "config.toml"
    config.write_text(toml_text(data), encoding="utf-8")
    assert main(["--config", str(config), "init-db"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot use the database:")
    assert "Traceback" not in err


# `--config env`: a container configured from its environment alone, no file.
ENV_ONLY = {
    **FILLED_IN,
    "TAGBOT_WECOM__AGENT_ID": "1000002",
    "TAGBOT_DATABASE__URL": "postgresql+psycopg://tagbot:pw@postgres:5432/tagbot",
    "TAGBOT_SERVER__HOST": "0.0.0.0",  # noqa: S104 - a container listens on its own interface
    "TAGBOT_SERVER__TRUSTED_PROXIES": "10.0.0.0/8, 172.16.0.0/12",
    "TAGBOT_CONSOLE__ADMINS": "zhangsan,LiSi",
    "TAGBOT_CONSOLE__VIEWERS": "",
    "TAGBOT_STAFF__LIUYANG": "刘洋",
}


def test_env_reads_no_file_and_takes_every_key_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no config.toml here: nothing is read from a file
    settings = load_settings("env", environ=ENV_ONLY)
    assert settings.wecom.corp_id == "ww7f3a9c1e5b2d4860"
    assert settings.wecom.agent_id == 1000002
    assert settings.database.url == "postgresql+psycopg://tagbot:pw@postgres:5432/tagbot"
    assert settings.server.host == "0.0.0.0"  # noqa: S104
    # List keys are comma-separated in one variable; an empty one is an empty list.
    assert settings.server.trusted_proxies == ("10.0.0.0/8", "172.16.0.0/12")
    assert settings.console.admins == ("zhangsan", "lisi")
    assert settings.console.viewers == ()
    assert settings.staff == {"liuyang": "刘洋"}


def test_a_list_key_from_the_environment_is_still_checked_item_by_item() -> None:
    env = {**ENV_ONLY, "TAGBOT_SERVER__TRUSTED_PROXIES": "10.0.0.0/8,not-a-network"}
    with pytest.raises(ConfigError) as info:
        load_settings("env", environ=env)
    (problem,) = info.value.problems
    assert problem.startswith("server.trusted_proxies:")
    assert "not-a-network" in problem
    assert problem.endswith("[from TAGBOT_SERVER__TRUSTED_PROXIES]")


def test_env_names_the_variable_to_set_for_each_missing_key() -> None:
    env = {k: v for k, v in ENV_ONLY.items() if k != "TAGBOT_WECOM__CORP_ID"}
    with pytest.raises(ConfigError) as info:
        load_settings("env", environ=env)
    assert info.value.problems == [
        "wecom.corp_id: is required [set TAGBOT_WECOM__CORP_ID: `--config env` reads no file]"
    ]


def test_check_config_from_the_environment_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in {**ENV_ONLY, "TAGBOT_CONFIG": "env"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TAGBOT_DATABASE__URL", f"sqlite:///{tmp_path / 'absent.db'}")
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "config OK: 环境变量 / the environment" in out
    assert "Xk2m9Qp4" not in out  # the secret stays masked
    monkeypatch.delenv("TAGBOT_WECOM__TOKEN")
    assert main(["check-config"]) == 2
    assert "wecom.token: is required [set TAGBOT_WECOM__TOKEN" in capsys.readouterr().err

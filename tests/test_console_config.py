"""`[console]` and `[wecom] web_login_url`: validated, each problem named by its key."""

from __future__ import annotations

from typing import Any

import pytest

from bot.config import DEFAULT_WEB_LOGIN_URL, settings_from_mapping
from bot.console.access import role_of
from bot.errors import ConfigError
from tests.support.corp import base_config


def _load(console: dict[str, Any] | None = None, **wecom: Any) -> Any:
    cfg = base_config("sqlite://")
    cfg["wecom"].update(wecom)
    if console is not None:
        cfg["console"] = console
    return settings_from_mapping(cfg, environ={})


def test_defaults_name_nobody_and_point_at_wecoms_login_page() -> None:
    settings = _load()
    assert settings.console.admins == ()
    assert settings.console.viewers == ()
    assert settings.wecom.web_login_url == DEFAULT_WEB_LOGIN_URL
    assert role_of(settings.console, "anyone") is None


def test_roles_come_from_the_lists_case_insensitively() -> None:
    settings = _load({"admins": ["ZhangSan"], "viewers": ["lisi"]})
    assert role_of(settings.console, "zhangsan") == "admin"
    assert role_of(settings.console, "LiSi") == "viewer"
    assert role_of(settings.console, "wangwu") is None


@pytest.mark.parametrize(
    ("console", "wecom", "expected"),
    [
        ({"admins": ["bad id"]}, {}, "console.admins: 'bad id' is not a WeCom userid"),
        ({"viewers": [""]}, {}, "console.viewers: '' is not a WeCom userid"),
        (
            {"admins": ["zhangsan"], "viewers": ["ZHANGSAN"]},
            {},
            "console: listed in both admins and viewers: zhangsan",
        ),
        ({"idle_minutes": 0}, {}, "console.idle_minutes:"),
        (
            {"idle_minutes": 600, "absolute_hours": 1},
            {},
            "console: absolute_hours must be at least idle_minutes",
        ),
        ({"owners": ["x"]}, {}, "console.owners: unknown key"),
        ({}, {"web_login_url": "login.example"}, "wecom.web_login_url: must be an http(s) URL"),
        (
            {},
            {"web_login_url": "https://login.example/sso?x=1"},
            "wecom.web_login_url: must be an http(s) URL without a query string",
        ),
    ],
)
def test_bad_values_are_refused_by_key(
    console: dict[str, Any], wecom: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _load(console, **wecom)
    assert any(p.startswith(expected) for p in err.value.problems), err.value.problems

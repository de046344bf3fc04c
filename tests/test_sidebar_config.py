"""`hint` on each tier, `[sidebar]` and `[wecom] oauth_url`: validated, named by key; the
sidebar's sessions are apart from the console's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.config import DEFAULT_OAUTH_URL, settings_from_mapping
from bot.console import sessions
from bot.db import Database
from bot.errors import ConfigError
from bot.sidebar.profile import hints_of
from bot.tiering.defaults import default_tiering
from tests.support.corp import base_config

TIER = {"tag": "高价值", "when": "spend_365d >= 1000"}


def _load(tier: dict[str, Any] | None = None, **sections: Any) -> Any:
    cfg = base_config("sqlite://")
    cfg["tiering"] = {
        "dimensions": [{"name": "value", "tag_group": "价值", "tiers": [tier or TIER]}]
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return settings_from_mapping(cfg, environ={})


def test_every_default_tier_has_a_chinese_talking_point() -> None:
    tiering = default_tiering()
    hints = hints_of(tiering)
    tiers = [(d.name, t.tag) for d in tiering.dimensions for t in d.tiers]
    assert len(tiers) == 32  # 13 dimensions, 流失风险, 预测价值 and 社群 included
    assert set(hints) == set(tiers)
    assert all(any("\u4e00" <= c <= "\u9fff" for c in hint) for hint in hints.values())


def test_defaults_a_tier_without_hint_the_sidebar_and_oauth() -> None:
    settings = _load()
    assert settings.tiering.dimensions[0].tiers[0].hint == ""
    assert hints_of(settings.tiering) == {}
    assert settings.sidebar.session_hours == 12
    assert settings.wecom.oauth_url == DEFAULT_OAUTH_URL
    padded = _load({**TIER, "hint": "  优先回复。 "})
    assert hints_of(padded.tiering) == {("value", "高价值"): "优先回复。"}


@pytest.mark.parametrize(
    ("tier", "sections", "expected"),
    [
        ({**TIER, "hint": "长" * 201}, {}, "tiering.dimensions[0].tiers[0].hint:"),
        (
            {**TIER, "hint": "第一行\n第二行"},
            {},
            "tiering.dimensions[0].tiers[0].hint: must be one line",
        ),
        ({**TIER, "hint": 5}, {}, "tiering.dimensions[0].tiers[0].hint:"),
        (None, {"sidebar": {"session_hours": 0}}, "sidebar.session_hours:"),
        (None, {"sidebar": {"url": "x"}}, "sidebar.url: unknown key"),
        (None, {"wecom": {"oauth_url": "open.example"}}, "wecom.oauth_url: must be an http(s) URL"),
    ],
)
def test_bad_values_are_refused_by_key(
    tier: dict[str, Any] | None, sections: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tier, **sections)
    assert any(p.startswith(expected) for p in err.value.problems), err.value.problems


def test_a_sidebar_session_never_opens_the_console_nor_the_reverse(db: Database) -> None:
    now = datetime(2026, 12, 1, 9, tzinfo=UTC)
    day = sessions.Expiry(idle=timedelta(hours=24), absolute=timedelta(hours=24))
    console = sessions.Expiry(idle=timedelta(minutes=30), absolute=timedelta(hours=1))
    with db.write() as session:
        side_id, _ = sessions.create(
            session=session,
            actor="alice",
            role="viewer",
            method=sessions.SIDEBAR_METHOD,
            now=now,
            expiry=day,
        )
        admin_id, _ = sessions.create(
            session=session, actor="boss", role="admin", method="wecom", now=now, expiry=console
        )
    later = now + timedelta(hours=2)
    with db.write() as session:
        # The console's next sign-in prunes its own expired sessions, not the sidebar's.
        sessions.create(
            session=session, actor="boss", role="admin", method="wecom", now=later, expiry=console
        )
    with db.read() as session:
        assert sessions.current(side_id, session=session, now=now, expiry=day) is None
        assert sessions.current(admin_id, session=session, now=now, expiry=console) is None
        side = sessions.current(side_id, session=session, now=later, expiry=day, kind="sidebar")
        assert side is not None
        assert side.actor == "alice"
        assert sessions.count_live(session=session, now=later, expiry=console) == 1
        assert sessions.count_live(session=session, now=later, expiry=day, kind="sidebar") == 1
    with db.write() as session:
        assert sessions.end_others("none", session=session) == 1  # the console's only
    with db.read() as session:
        assert sessions.count_live(session=session, now=later, expiry=day, kind="sidebar") == 1

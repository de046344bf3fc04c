"""`tagbot check-config` on campaigns: each cross-key problem by key, exit code 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.config import load_settings
from tagbot.cli import main
from tests.support.campaigns import campaign, config_text
from tests.support.configs import FILLED_IN

ROOT = Path(__file__).resolve().parent.parent


def _check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *campaigns: dict[str, Any]
) -> tuple[int, list[str], str]:
    path = tmp_path / "config.toml"
    path.write_text(config_text("sqlite:///x.db", campaigns), encoding="utf-8")
    code = main(["--config", str(path), "check-config"])
    err = capsys.readouterr().err
    problems = [line[4:] for line in err.splitlines() if line.startswith("  - ")]
    return code, problems, err


def test_good_campaigns_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        config_text(
            "sqlite:///x.db",
            [
                campaign("高价值关怀", when='tier.lifecycle == "新客户" and orders_365d >= 2'),
                campaign(
                    "沉睡唤醒",
                    action="follow_up",
                    dimension="lifecycle",
                    on_enter="沉睡客户",
                    text="{staff}，建议电话回访",
                ),
                campaign("茶客", dimension="category", tiers=["茶", "任何值"]),
            ],
        ),
        encoding="utf-8",
    )
    assert main(["--config", str(path), "check-config"]) == 0
    assert "campaigns=3" in capsys.readouterr().out


def test_unknown_dimension_and_tiers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, problems, _ = _check(
        tmp_path,
        capsys,
        campaign("甲", dimension="valeu"),
        campaign("乙", tiers=["高价值", "超高价值"]),
        campaign("丙", dimension="lifecycle", on_enter="沉睡"),
    )
    assert code == 2
    assert problems == [
        "outreach.campaigns[0].dimension: unknown dimension 'valeu' (did you mean 'value'?)"
        " (dimensions: value, lifecycle, category) [in " + str(tmp_path / "config.toml") + "]",
        "outreach.campaigns[1].tiers: dimension 'value' has no tier '超高价值'"
        " (did you mean '高价值'?) (its tiers: 高价值, 中价值, 低价值) [in "
        + str(tmp_path / "config.toml")
        + "]",
        "outreach.campaigns[2].on_enter: dimension 'lifecycle' has no tier '沉睡'"
        " (did you mean '沉睡客户'?) (its tiers: 新客户, 沉睡客户) [in "
        + str(tmp_path / "config.toml")
        + "]",
    ]


def test_a_bad_when_is_shown_with_its_key_text_and_caret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, problems, err = _check(
        tmp_path,
        capsys,
        campaign("甲", when="spend_356d >= 5000"),
        campaign("乙", when="channel > 3"),
        campaign("丙", when='tier.value == "超高"'),
    )
    assert code == 2
    assert [p.split(" [in ")[0] for p in problems] == [
        "outreach.campaigns[0].when: unknown name 'spend_356d' (did you mean 'spend_365d'?)",
        "outreach.campaigns[1].when: '>' compares numbers only, but 'channel' is a string"
        " (use == or in for text)",
        "outreach.campaigns[2].when: dimension 'value' has no tier '超高'",
    ]
    assert "\n    spend_356d >= 5000\n    ^^^^^^^^^^\n" in err
    assert "\n    channel > 3\n    ^^^^^^^^^^^\n" in err


def test_name_in_a_group_message_is_refused_with_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, problems, _ = _check(
        tmp_path,
        capsys,
        campaign("甲", text="{name}您好，{staff}为您准备了礼遇"),
        campaign("乙", text="{staff} {coupon}"),
        campaign("丙", action="follow_up", text="回访 {name} {tier}"),
        campaign("丁", action="webhook", webhook_url="https://x.example.com/h", text="{name}"),
    )
    assert code == 2
    assert [p.split(" [in ")[0] for p in problems] == [
        "outreach.campaigns[0].text: {name} — a 群发 task carries one text for all of a staff"
        " member's customers, so a per-customer {name} cannot be filled; only {staff} can",
        "outreach.campaigns[1].text: {coupon} — unknown placeholder; a group_message text knows"
        " only {staff}",
        "outreach.campaigns[2].text: {name} — unknown placeholder; a follow_up text knows only"
        " {staff}",
        "outreach.campaigns[2].text: {tier} — unknown placeholder; a follow_up text knows only"
        " {staff}",
    ]


def test_the_example_config_carries_one_campaign_per_wecom_action() -> None:
    settings = load_settings(ROOT / "config.example.toml", environ=FILLED_IN)
    shown = [
        (c.name, c.action, c.dimension, c.tiers, c.on_enter) for c in settings.outreach.campaigns
    ]
    assert shown == [
        ("高价值关怀", "group_message", "value", ("高价值",), None),
        ("沉睡唤醒", "follow_up", "lifecycle", (), "沉睡客户"),
        # The predictive example: 高价值 customers the model says are likely gone.
        ("高价值流失挽留", "follow_up", "value", ("高价值",), None),
    ]
    assert settings.outreach.campaigns[2].when == 'tier.churn_risk == "流失风险高"'
    assert settings.outreach.campaigns[0].attachments[0].type == "link"
    # The webhook example is there, commented until a real URL and secret are filled in.
    text = (ROOT / "config.example.toml").read_text("utf-8")
    assert '# action = "webhook"' in text

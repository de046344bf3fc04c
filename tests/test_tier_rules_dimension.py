"""Dimensions: hysteresis at every boundary, tag_from with 其他, explanations, config checks."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import DimensionSettings, settings_from_mapping
from bot.errors import ConfigError
from bot.rules import (
    OTHER_TAG,
    TagFromDimension,
    TieredDimension,
    assign_tier,
    compile_dimension,
    compile_tag_from,
    explain_dimension,
    load_dimensions,
    tag_value,
)
from tagbot.cli import main
from tests.support.corp import base_config
from tests.tier_rules_support import select, table

ROOT = Path(__file__).resolve().parent.parent
DWELL = 7


def dims(*raw: dict[str, Any]) -> tuple[Any, ...]:
    return load_dimensions([DimensionSettings.model_validate(d) for d in raw])


VALUE = dims(
    {
        "name": "value",
        "tag_group": "价值",
        "min_dwell_days": DWELL,
        "tiers": [
            {"tag": "A", "when": "spend_365d >= 100", "stay": "spend_365d >= 80"},
            {"tag": "B", "when": "spend_365d >= 10"},
            {"tag": "C", "when": "orders_365d >= 1"},
        ],
    }
)[0]


def tier(
    dim: TieredDimension, row: dict[str, Any], cur: str | None = None, since: int | None = None
) -> str | None:
    """Return the tier from the SQL CASE in DuckDB, asserting the Python twin agrees."""
    full = {**row, "cur_tier": cur, "cur_since_days": since}
    names = ["spend_365d", "orders_365d", "cur_tier", "cur_since_days"]
    (sql,) = select(compile_dimension(dim), [full], names)
    python = assign_tier(dim, row, cur_tier=cur, cur_since_days=since).tag
    assert sql == python, (row, cur, since)
    return sql


def test_without_a_current_tier_the_first_matching_tier_wins() -> None:
    assert tier(VALUE, {"spend_365d": 150, "orders_365d": 3}) == "A"
    assert tier(VALUE, {"spend_365d": 100}) == "A"  # at the threshold
    assert tier(VALUE, {"spend_365d": 99.99, "orders_365d": 3}) == "B"
    assert tier(VALUE, {"spend_365d": 5, "orders_365d": 1}) == "C"
    assert tier(VALUE, {"spend_365d": 5, "orders_365d": 0}) is None
    assert tier(VALUE, {}) is None  # everything missing: unknown is not a match


def test_stay_replaces_when_for_the_current_tier_only() -> None:
    assert tier(VALUE, {"spend_365d": 90}, "A", 30) == "A"  # stay true
    assert tier(VALUE, {"spend_365d": 80}, "A", 30) == "A"  # stay at its boundary
    assert tier(VALUE, {"spend_365d": 79}, "A", 30) == "B"  # stay false, dwell over
    assert tier(VALUE, {"spend_365d": 90}, "B", 30) == "B"  # A's stay is not B's way up


def test_leaving_waits_for_the_dwell_day_n_and_not_n_minus_1() -> None:
    row = {"spend_365d": 50}
    assert tier(VALUE, row, "A", 0) == "A"
    assert tier(VALUE, row, "A", DWELL - 1) == "A"
    assert tier(VALUE, row, "A", DWELL) == "B"
    assert tier(VALUE, row, "A", None) == "B"  # unknown entry date: dwelled long enough


def test_leaving_to_no_tier_also_waits() -> None:
    row = {"spend_365d": 1, "orders_365d": 0}
    assert tier(VALUE, row, "B", DWELL - 1) == "B"
    assert tier(VALUE, row, "B", DWELL) is None


def test_an_earlier_tier_wins_at_once_while_dwelling() -> None:
    assert tier(VALUE, {"spend_365d": 100}, "B", 0) == "A"
    assert tier(VALUE, {"spend_365d": 10}, "C", 1) == "B"


def test_a_later_tier_waits_while_dwelling() -> None:
    row = {"spend_365d": 5, "orders_365d": 1}
    assert tier(VALUE, row, "B", 1) == "B"
    assert tier(VALUE, row, "B", DWELL - 1) == "B"
    assert tier(VALUE, row, "B", DWELL) == "C"


def test_missing_values_while_in_a_tier() -> None:
    # A's stay is unknown: not kept by its rule; kept while dwelling, then falls through.
    assert tier(VALUE, {"orders_365d": 1}, "A", DWELL - 1) == "A"
    assert tier(VALUE, {"orders_365d": 1}, "A", DWELL) == "C"
    assert tier(VALUE, {}, "A", DWELL) is None


def test_a_tier_removed_from_config_counts_as_no_current_tier() -> None:
    assert tier(VALUE, {"spend_365d": 50}, "gone", 0) == "B"


def test_zero_dwell_moves_at_once() -> None:
    no_dwell = TieredDimension(VALUE.name, VALUE.tag_group, VALUE.tiers, 0)
    assert tier(no_dwell, {"spend_365d": 50}, "A", 0) == "B"
    assert "cur_since_days" not in compile_dimension(no_dwell)


@settings(max_examples=200, deadline=None, database=None)
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {
                "spend_365d": st.sampled_from([None, 0, 9, 10, 79, 80, 99, 100, 150]),
                "orders_365d": st.sampled_from([None, 0, 1]),
                "cur_tier": st.sampled_from([None, "A", "B", "C", "gone"]),
                "cur_since_days": st.sampled_from([None, 0, DWELL - 1, DWELL, 30]),
            }
        ),
        min_size=1,
        max_size=10,
    )
)
def test_case_sql_and_python_hysteresis_agree(rows: list[dict[str, Any]]) -> None:
    names = ["spend_365d", "orders_365d", "cur_tier", "cur_since_days"]
    sql = select(compile_dimension(VALUE), rows, names)
    python = [
        assign_tier(VALUE, r, cur_tier=r["cur_tier"], cur_since_days=r["cur_since_days"]).tag
        for r in rows
    ]
    assert sql == python


def test_case_qualifies_columns_with_a_table() -> None:
    sql = compile_dimension(VALUE, table="m", cur_tier="tier_now", cur_since_days="days_in")
    assert '"m"."spend_365d"' in sql
    assert '"m"."tier_now"' in sql
    assert '"m"."days_in"' in sql
    assert '"spend_365d" >=' not in sql.replace('"m"."spend_365d"', "")


# --- tag_from --------------------------------------------------------------------------------

CHANNEL = dims({"name": "ch", "tag_group": "渠道", "tag_from": "channel", "max_tags": 3})[0]


def tags_by_customer(dim: TagFromDimension, values: list[str | None]) -> list[str | None]:
    con = duckdb.connect()
    table(con, [{"channel": v} for v in values], ["channel"])
    got = dict(con.execute(compile_tag_from(dim)).fetchall())
    return [got[i] for i in range(len(values))]


def test_tag_from_gives_the_value_as_the_tag_and_folds_the_rest_into_other() -> None:
    values = ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"] + [None, "", "  "]
    got = tags_by_customer(CHANNEL, values)
    # 4 distinct values > max_tags 3: the 2 most common keep their tag, the rest share 其他.
    assert got == ["a"] * 5 + ["b"] * 3 + [OTHER_TAG] * 3 + [None, None, None]
    assert len({t for t in got if t}) == 3


def test_tag_from_within_max_tags_keeps_every_value() -> None:
    values = ["a", "a", "b", " c ", "c"]
    assert tags_by_customer(CHANNEL, values) == ["a", "a", "b", "c", "c"]


def test_tag_from_ties_break_by_value() -> None:
    assert tags_by_customer(CHANNEL, ["z", "y", "x", "w"]) == [OTHER_TAG, OTHER_TAG, "x", "w"]


def test_tag_from_cuts_values_to_thirty_characters() -> None:
    long_a, long_b = "长" * 30 + "甲", "长" * 30 + "乙"
    got = tags_by_customer(CHANNEL, [long_a, long_b, "x"])
    assert got == ["长" * 30, "长" * 30, "x"]  # both share one 30-character tag
    assert tag_value(CHANNEL, {"channel": long_a}) == "长" * 30
    assert tag_value(CHANNEL, {"channel": "  "}) is None


def test_tag_from_explanation() -> None:
    text = explain_dimension(CHANNEL, {"channel": "长" * 31}).render()
    assert (
        text == f'ch：{"长" * 30} — 取自 channel = "{"长" * 31}"（超过 30 字，截断为 {"长" * 30}）'
    )
    other = explain_dimension(CHANNEL, {"channel": "d"}, assigned=OTHER_TAG).render()
    assert other.endswith("不在客户数最多的前 2 个取值中，归入 其他")
    assert explain_dimension(CHANNEL, {}).render() == "ch：无 — channel 缺失"


# --- explanations ------------------------------------------------------------------------------

LIFE = dims(
    {
        "name": "生命周期",
        "tag_group": "生命周期",
        "tiers": [
            {"tag": "高价值", "when": "spend_365d >= 5000 and orders_365d >= 3"},
            {"tag": "沉睡", "when": "days_since_last_order > 180"},
            {"tag": "有意向", "when": 'intent_no_buy_30d or channel in ["直播", "公众号"]'},
        ],
    }
)[0]


def test_explanation_says_which_tier_matched_and_why_the_earlier_ones_did_not() -> None:
    row = {"spend_365d": 3200, "orders_365d": 4, "days_since_last_order": 200}
    assert explain_dimension(LIFE, row).lines == (
        "生命周期：沉睡 — 首个满足条件的层级",
        "  高价值：未满足 — spend_365d = 3200 < 5000",
        "  沉睡：满足 — days_since_last_order = 200 > 180",
    )


def test_explanation_when_nothing_matches_gives_every_tier_and_unknowns() -> None:
    row = {"spend_365d": 6000, "intent_no_buy_30d": False, "channel": "抖音"}
    assert explain_dimension(LIFE, row).lines == (
        "生命周期：无 — 没有满足条件的层级",
        "  高价值：未知 — orders_365d 缺失",
        "  沉睡：未知 — days_since_last_order 缺失",
        '  有意向：未满足 — intent_no_buy_30d = 否；channel = "抖音" 不在 ["直播", "公众号"] 中',
    )


def test_explanation_of_hysteresis_steps() -> None:
    kept = explain_dimension(VALUE, {"spend_365d": 90}, cur_tier="A", cur_since_days=30)
    assert kept.tag == "A"
    assert kept.lines == (
        "value：A — 保持 A（满足保留条件 stay）",
        "  A（保留条件）：满足 — spend_365d = 90 ≥ 80",
    )
    dwelling = explain_dimension(VALUE, {"spend_365d": 50}, cur_tier="A", cur_since_days=3)
    assert dwelling.lines[0] == "value：A — 保持 A：进入 3 天，未满最短停留 7 天"
    assert dwelling.lines[1] == "  A（保留条件）：未满足 — spend_365d = 50 < 80"
    assert len(dwelling.lines) == 4  # every tier shown
    up = explain_dimension(VALUE, {"spend_365d": 120}, cur_tier="B", cur_since_days=0)
    assert up.lines[0] == "value：A — 排在当前层级 B 之前的层级满足条件，立即调整"


def test_explanation_of_profile_text_that_is_not_a_number() -> None:
    dim = dims(
        {
            "name": "age",
            "tag_group": "年龄",
            "tiers": [{"tag": "成熟", "when": "profile.age >= 30"}],
        }
    )[0]
    assert explain_dimension(dim, {"profile.age": "三十"}).lines[1] == (
        '  成熟：未知 — profile.age = "三十"（不是数字）'
    )
    assert (
        explain_dimension(dim, {"profile.age": "31"}).lines[1]
        == "  成熟：满足 — profile.age = 31 ≥ 30"
    )


# --- config ------------------------------------------------------------------------------------


def config_with(*dimensions: dict[str, Any]) -> dict[str, Any]:
    data = base_config("sqlite:///x.db")
    data["tiering"] = {"dimensions": list(dimensions)}
    return data


def problems(*dimensions: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(config_with(*dimensions), environ={})
    return info.value.problems


def test_a_dimension_has_tiers_or_tag_from_not_both_nor_neither() -> None:
    both = {
        "name": "x",
        "tag_group": "g",
        "tag_from": "channel",
        "tiers": [{"tag": "t", "when": "true"}],
    }
    assert problems(both) == [
        "tiering.dimensions[0]: has both tiers and tag_from; give one of them"
    ]
    assert problems({"name": "x", "tag_group": "g"}) == [
        "tiering.dimensions[0]: needs tiers (a list of [[...tiers]]) or tag_from"
    ]


def test_tag_from_must_name_a_text_value() -> None:
    (problem,) = problems({"name": "x", "tag_group": "g", "tag_from": "spend_365d"})
    assert problem.splitlines() == [
        "tiering.dimensions[0].tag_from: tag_from needs a text value; 'spend_365d' is a number",
        "    spend_365d",
        "    ^^^^^^^^^^",
    ]
    (problem,) = problems({"name": "x", "tag_group": "g", "tag_from": "chanel"})
    assert "unknown name 'chanel' (did you mean 'channel'?)" in problem
    (problem,) = problems({"name": "x", "tag_group": "g", "tag_from": "channel == 1"})
    assert "tag_from takes one name" in problem


def test_max_tags_is_bounded_by_wecom() -> None:
    (problem,) = problems({"name": "x", "tag_group": "g", "tag_from": "channel", "max_tags": 3001})
    assert problem.startswith("tiering.dimensions[0].max_tags:")


def test_structural_problems_are_reported_by_key() -> None:
    got = problems(
        {
            "name": "a",
            "tag_group": "g1",
            "tiers": [{"tag": "t", "when": "true"}, {"tag": "t", "when": "false"}],
        },
        {"name": "a", "tag_group": "g2", "tag_from": "channel", "min_dwell_days": 3},
    )
    assert got == [
        "tiering.dimensions[0].tiers[1].tag: duplicate tier 't' in this dimension",
        "tiering.dimensions[1].name: duplicate dimension name 'a'",
        "tiering.dimensions[1].min_dwell_days: applies to tiers only, not tag_from",
    ]


def test_every_rule_problem_is_listed_with_its_key() -> None:
    got = problems(
        {
            "name": "v",
            "tag_group": "g1",
            "tiers": [{"tag": "t", "when": "spend_356d > 1", "stay": "x >"}],
        },
        {
            "name": "w",
            "tag_group": "g2",
            "tiers": [{"tag": "u", "when": 'tier.v == "t" and tier.w == "u"'}],
        },
    )
    assert [p.split(":")[0] for p in got] == [
        "tiering.dimensions[0].tiers[0].when",
        "tiering.dimensions[0].tiers[0].stay",
        "tiering.dimensions[1].tiers[0].when",
    ]
    assert "'tier.w': dimension 'w' is not listed before this one" in got[2]


def test_the_default_dimensions_pass_the_checker() -> None:
    data = base_config("sqlite:///x.db")
    with (ROOT / "bot/tiering/default_tiers.toml").open("rb") as fh:
        data["tiering"] = tomllib.load(fh)["tiering"]
    loaded = load_dimensions(settings_from_mapping(data, environ={}).tiering.dimensions)
    assert [d.tag_group for d in loaded] == [
        "价值分层",
        "活跃度",
        "生命周期",
        "流失预警",
        "流失风险",
        "预测价值",
        "购买行为",
        "RFM",
        "偏好",
        "品类偏好",
        "会员等级",
        "首次渠道",
        "社群",
    ]
    rfm = next(d for d in loaded if d.name == "rfm")
    assert isinstance(rfm, TieredDimension)
    assert len(rfm.tiers) == 8
    # Every default compiles and runs in DuckDB over a table with every name.
    for dim in loaded:
        if isinstance(dim, TieredDimension):
            names = sorted(dim.names_used() | {"cur_tier", "cur_since_days"})
            assert select(compile_dimension(dim), [{}], names) == [None]


BAD_RULES_CONFIG = """\
[wecom]
corp_id = "ww1"
secret = "s"
agent_id = 1
token = "tok"
encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
[server]
admin_token = "0123456789abcdef"

[[tiering.dimensions]]
name = "value"
tag_group = "价值"
[[tiering.dimensions.tiers]]
tag = "高价值"
when = "spend_365d >= 5000"
[[tiering.dimensions.tiers]]
tag = "中价值"
when = "spend_356d >= 1000"

[[tiering.dimensions]]
name = "life"
tag_group = "生命周期"
[[tiering.dimensions.tiers]]
tag = "老客户"
when = "channel > 3 or tier.value == '高价'"
"""


def test_check_config_reports_rule_problems_with_key_and_caret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(BAD_RULES_CONFIG, encoding="utf-8")
    assert main(["--config", str(config), "check-config"]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s)" in err
    # Each problem's first line names where the value came from; the rule and caret follow.
    assert (
        "  - tiering.dimensions[0].tiers[1].when: unknown name 'spend_356d' (did you mean 'spend_365d'?)"
        f" [in {config}]\n"
        "    spend_356d >= 1000\n"
        "    ^^^^^^^^^^\n"
    ) in err
    assert (
        "  - tiering.dimensions[1].tiers[0].when: '>' compares numbers only, but 'channel' is a string"
    ) in err
    assert "    channel > 3 or tier.value == '高价'\n    ^^^^^^^^^^^\n" in err
    assert "Traceback" not in err


def test_check_config_from_the_outside(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(BAD_RULES_CONFIG.replace("channel > 3 or ", ""), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "tagbot.cli", "--config", str(config), "check-config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2, proc.stderr
    assert (
        "tiering.dimensions[1].tiers[0].when: dimension 'value' has no tier '高价' (did you mean '高价值'?)"
        in proc.stderr
    )
    assert "    tier.value == '高价'\n                  ^^^^^^\n" in proc.stderr
    assert "Traceback" not in proc.stderr

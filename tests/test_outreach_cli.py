"""`tagbot outreach list | run NAME [--dry-run]` from the outside, and scheduled runs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.config import load_settings
from bot.db import Database
from bot.db.models import CampaignRun
from bot.outreach.plan import in_holdout
from bot.outreach.service import run_campaign
from bot.runtime import Runtime
from jobs import registry
from tagbot.cli import main
from tests.support import parts
from tests.support.campaigns import (
    AS_OF,
    assign,
    campaign,
    config_text,
    customer,
    relation,
    staff,
    table_counts,
)
from wecom_sim import Simulator

# How many of wm_1..wm_8 the 50 % holdout of 高价值关怀 takes (fixed by the hash).
HELD = sum(in_holdout("高价值关怀", f"wm_{i}", 50) for i in range(1, 9))
CAMPAIGNS = [
    campaign("高价值关怀", holdout_pct=50, schedule="0 10 * * 1"),
    campaign(
        "沉睡唤醒",
        action="follow_up",
        dimension="lifecycle",
        on_enter="沉睡客户",
        text="建议电话回访",
        when="orders_total >= 1",
    ),
]


@pytest.fixture
def config(tmp_path: Path, db: Database, simulator: Simulator) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(config_text(db.url, CAMPAIGNS, api_base=simulator.api_base), "utf-8")
    with db.write() as s:
        zhang, li = staff(s, "zhang"), staff(s, "li")
        for i in range(1, 9):
            c = customer(s, f"wm_{i}", f"客户{i}")
            relation(s, c, zhang if i <= 4 else li, days_ago=20)
            assign(s, c, "value", "高价值")
        assign(s, customer(s, "wm_none"), "value", "高价值")  # no relation
    # The same corp in WeCom, so a real run's 群发 tasks can be created there.
    for userid in ("zhang", "li"):
        simulator.add_staff(userid)
    for i in range(1, 9):
        simulator.add_relation("zhang" if i <= 4 else "li", f"wm_{i}", name=f"客户{i}")
    return path


def _lines(out: str) -> list[str]:
    return out.splitlines()


def _blocks(lines: list[str]) -> dict[str, list[str]]:
    """Each `员工 X：` line with the indented lines under it."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        if line.startswith("员工 "):
            current = out.setdefault(line, [])
        elif line.startswith("  ") and current is not None:
            current.append(line)
        else:
            current = None
    return out


def test_dry_run_prints_each_staff_members_audience_and_calls_nothing(
    config: Path, db: Database, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    before = table_counts(db)
    simulator.reset_counters()
    as_of = ["--as-of", AS_OF.isoformat()]
    assert (
        main(["--config", str(config), "outreach", "run", "高价值关怀", "--dry-run", *as_of]) == 0
    )
    out = capsys.readouterr().out
    assert simulator.calls == {}
    assert table_counts(db) == before
    lines = _lines(out)
    assert lines[0].startswith(
        "试运行（未写入任何数据，未调用企业微信）/ dry run：高价值关怀（群发）"
    )
    assert lines[1] == (
        f"受众 9 人：触达 {8 - HELD}，对照组 {HELD}，已达上限 0，冷却中 0，无有效跟进员工 1"
    )
    blocks = _blocks(lines)
    assert set(blocks) == {"员工 li：", "员工 zhang："}
    listed = "\n".join(blocks["员工 zhang："] + blocks["员工 li："])
    for i in range(1, 9):  # each reachable customer once, under their staff member
        assert listed.count(f"（wm_{i}）") == 1
        assert f"（wm_{i}）" in "".join(blocks["员工 zhang：" if i <= 4 else "员工 li："])
    assert all(line.startswith(("  触达 ", "  对照组 ")) for line in listed.splitlines())
    assert lines[-1] == "无有效跟进员工（不触达）1 人：wm_none"


def test_dry_run_lists_capped_and_cooling_customers(
    config: Path, db: Database, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    rt = Runtime(load_settings(config))
    try:
        run_campaign(**parts.outreach(rt), name="高价值关怀", as_of=AS_OF - timedelta(days=1))
    finally:
        rt.close()
    args = ["outreach", "run", "高价值关怀", "--dry-run", "--as-of", AS_OF.isoformat()]
    assert main(["--config", str(config), *args]) == 0
    lines = _lines(capsys.readouterr().out)
    assert lines[1] == "受众 9 人：触达 0，对照组 0，已达上限 0，冷却中 8，无有效跟进员工 1"
    assert _blocks(lines)["员工 zhang："] == [
        "  冷却中 4 人：客户1（wm_1）、客户2（wm_2）、客户3（wm_3）、客户4（wm_4）"
    ]


def test_list_then_run_then_list_shows_the_last_run(
    config: Path, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config), "outreach", "list"]) == 0
    lines = _lines(capsys.readouterr().out)
    assert lines[0] == "名称\t动作\t受众\t定时\t对照组\t上次运行\t上次人数（触达/对照/限额/冷却）"
    assert lines[1] == "高价值关怀\t群发\tvalue：高价值\t0 10 * * 1\t50%\t从未运行\t—"
    assert lines[2] == (
        "沉睡唤醒\t回访任务\tlifecycle：进入 沉睡客户，且 orders_total >= 1\t手动\t0%\t从未运行\t—"
    )
    assert main(["--config", str(config), "outreach", "run", "高价值关怀"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("已生成第 1 次运行 / run 1 planned：高价值关怀（群发）")
    assert _lines(out)[-1].startswith("运行状态 / status：已完成")
    # One 群发 task per staff member with treatment customers (the holdout takes some).
    senders = {"zhang" for i in range(1, 5) if not in_holdout("高价值关怀", f"wm_{i}", 50)}
    senders |= {"li" for i in range(5, 9) if not in_holdout("高价值关怀", f"wm_{i}", 50)}
    assert simulator.calls.get("externalcontact/add_msg_template", 0) == len(senders)
    assert main(["--config", str(config), "outreach", "list"]) == 0
    row = _lines(capsys.readouterr().out)[1].split("\t")
    assert row[5].endswith("（done）")
    assert row[6] == f"{8 - HELD}/{HELD}/0/0"


def test_an_unknown_campaign_is_one_line_naming_the_configured_ones(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config), "outreach", "run", "春节活动"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: 没有名为 '春节活动' 的触达活动 / no campaign '春节活动'; 已配置：高价值关怀、沉睡唤醒"
    ]


def test_each_scheduled_campaign_is_a_job_run_with_trigger_schedule(
    config: Path, db: Database
) -> None:
    settings = load_settings(config)
    jobs = {spec.id: spec for spec in registry.scheduled(settings)}
    # 沉睡唤醒 is manual; channel-stats is the console's daily channel rollup, day-population
    # the explanations' rank basis
    assert {"sync", "retier", "day-population", "channel-stats", "outreach:高价值关怀"} == set(jobs)
    spec = jobs["outreach:高价值关怀"]
    assert spec.cron(settings) == "0 10 * * 1"
    rt = Runtime(settings)
    try:
        spec.run(rt)
    finally:
        rt.close()
    with db.read() as s:
        run = s.scalars(select(CampaignRun)).one()
    assert (run.trigger, run.status, run.treatment + run.holdout) == ("schedule", "done", 8)

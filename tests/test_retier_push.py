"""A re-tier queues its tier tags for WeCom: one mark_tag per changed relation, none on a rerun."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.db import Database
from bot.db.models import Customer
from tagbot.cli import main
from tests.support.configs import write_config
from tests.support.tiers import mark_tag_calls, relation_tag_names
from tests.tier_metrics_factory import AS_OF, local, order
from wecom_sim import Simulator


@pytest.fixture
def config(tmp_path: Path, db: Database, simulator: Simulator) -> Path:
    """A config on the test database and the simulator, with the default tier dimensions."""
    return write_config(tmp_path, db.url, api_base=simulator.api_base, default_tiers=True)


def test_retier_pushes_each_changed_relation_once_and_a_rerun_costs_nothing(
    config: Path, db: Database, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.add_staff("zhang", "张三")
    simulator.add_staff("li", "李四")
    vip = simulator.add_relation("zhang", "wm_vip_0000000000000000000001")
    simulator.add_relation("li", vip)  # two members follow the VIP: two relations to tag
    small = simulator.add_relation("li", "wm_small_00000000000000000001")
    assert main(["--config", str(config), "sync"]) == 0
    with db.write() as s:
        by_ext = {c.external_userid: c for c in s.scalars(select(Customer))}
        order(s, by_ext[vip], 6000, local(3))
        order(s, by_ext[small], 300, local(3))
    capsys.readouterr()

    as_of = ["--as-of", AS_OF.isoformat()]
    before = mark_tag_calls(simulator)
    assert main(["--config", str(config), "retier", "--no-push", *as_of]) == 0
    out = capsys.readouterr().out
    assert "已排队 3 个关系的标签变更" in out  # zhang×vip, li×vip, li×small
    assert mark_tag_calls(simulator) == before  # --no-push leaves them queued
    assert main(["--config", str(config), "push"]) == 0
    assert mark_tag_calls(simulator) - before == 3  # one call per relation, all dimensions in it
    for userid in ("zhang", "li"):
        assert "价值分层/高价值" in relation_tag_names(simulator, userid, vip)
    assert "价值分层/低价值" in relation_tag_names(simulator, "li", small)

    capsys.readouterr()
    assert main(["--config", str(config), "retier", *as_of]) == 0
    assert "已排队 0 个关系的标签变更" in capsys.readouterr().out
    assert mark_tag_calls(simulator) - before == 3  # the unchanged rerun made no call


def test_retier_drains_what_it_queued_and_prints_the_push_progress(
    config: Path, db: Database, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.add_staff("wang", "王五")
    exts = [simulator.add_relation("wang", f"wm_drain_{i:026d}") for i in range(3)]
    assert main(["--config", str(config), "sync"]) == 0
    with db.write() as s:
        for c in s.scalars(select(Customer).where(Customer.external_userid.in_(exts[:2]))):
            order(s, c, 6000, local(3))
    capsys.readouterr()
    before = mark_tag_calls(simulator)
    assert main(["--config", str(config), "retier", "--as-of", AS_OF.isoformat()]) == 0
    out = capsys.readouterr().out
    assert "已排队 3 个关系的标签变更" in out  # the two buyers, and the third's 潜在客户
    assert "待推送 pending: 0 " in out
    assert "已完成 done: 3 " in out
    assert mark_tag_calls(simulator) - before == 3
    assert all("价值分层/高价值" in relation_tag_names(simulator, "wang", e) for e in exts[:2])


def test_retier_with_wecom_unreachable_records_tiers_and_says_so(
    tmp_path: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    # WeCom at a closed port
    path = write_config(tmp_path, db.url, default_tiers=True, wecom={"max_retries": 0})
    with db.write() as s:
        c = Customer(external_userid="wm_alone")
        s.add(c)
        s.flush()
        order(s, c, 6000, local(3))
    assert main(["--config", str(path), "retier", "--as-of", AS_OF.isoformat()]) == 0
    out = capsys.readouterr().out
    assert "企业微信暂不可达：层级已记录" in out
    with db.read() as s:
        assert s.scalar(select(Customer.id).where(Customer.external_userid == "wm_alone"))


def test_retier_reports_every_wecom_call_it_made_per_api(
    config: Path, db: Database, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.add_staff("wang", "王五")
    exts = [simulator.add_relation("wang", f"wm_cost_{i:027d}") for i in range(3)]
    assert main(["--config", str(config), "sync"]) == 0
    with db.write() as s:
        for c in s.scalars(select(Customer).where(Customer.external_userid.in_(exts[:2]))):
            order(s, c, 6000, local(3))
    simulator.reset_counters()
    capsys.readouterr()
    assert main(["--config", str(config), "retier", "--as-of", AS_OF.isoformat()]) == 0
    out = capsys.readouterr().out
    made = {k: n for k, n in simulator.calls.items() if isinstance(k, str) and k != "gettoken"}
    # The first run reads the catalogue and creates the tier tags before any mark_tag.
    assert made["externalcontact/get_corp_tag_list"] >= 1
    assert made["externalcontact/add_corp_tag"] >= 1
    assert made["externalcontact/mark_tag"] == 3
    line = next(x for x in out.splitlines() if x.startswith("企业微信调用 / WeCom calls:"))
    assert line.startswith(f"企业微信调用 / WeCom calls: {sum(made.values())}（")
    parts = [part.split(" ×") for part in line.split("（")[1].rstrip("）").split("，")]
    listed = {api: int(n) for api, n in parts}
    assert listed == made


def test_log_lines_never_run_into_the_progress_bar(tmp_path: Path, db: Database) -> None:
    # WeCom at a closed port: the hand-off logs a warning while the bar is on stderr.
    path = write_config(tmp_path, db.url, default_tiers=True, wecom={"max_retries": 0})
    with db.write() as s:
        for i in range(3):
            c = Customer(external_userid=f"wm_bar_{i}")
            s.add(c)
            s.flush()
            order(s, c, 6000, local(3))
    tagbot = Path(sys.executable).with_name("tagbot")
    done = subprocess.run(
        [str(tagbot), "--config", str(path), "retier", "--as-of", AS_OF.isoformat()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "记录层级变动" in done.stderr  # the bar was drawn...
    logged = [line for line in done.stderr.split("\n") if "bot.retier" in line]
    assert logged  # ...and the warning logged while it was up
    for line in logged:
        # What is left on the terminal line after the bar was cleared (\r) is the log line.
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING ", line.split("\r")[-1]), (
            repr(line)
        )

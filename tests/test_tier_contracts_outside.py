"""The tiering contract from the outside, where test_retier_outside stops short.

A dry run after a real run (assignments exist, WeCom is reachable) changes no row of any
table and makes no WeCom call; a bad rule stops `serve`, `worker` and `scheduler` at
start-up with its key and a caret; the one scheduler books the nightly re-tier at 03:00
Asia/Shanghai by default; the API gives each dimension's since and says why none matched.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text

from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import Base, Customer
from bot.retier import retier_configured
from bot.runtime import Runtime
from bot.tiering.defaults import default_tiers_text
from handlers.app import create_app
from jobs.background import Background
from tagbot.cli import main
from tests.support import parts
from tests.support.configs import toml_text
from tests.support.corp import ADMIN_TOKEN, base_config
from tests.support.tiers import default_tiers_config
from tests.tier_metrics_factory import AS_OF, local, order
from wecom_sim import Simulator


def _every_row(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order (a dry run must leave all of them)."""
    with db.read() as s:
        return {
            t.name: sorted(
                (tuple(map(repr, row)) for row in s.execute(text(f'SELECT * FROM "{t.name}"'))),
            )
            for t in Base.metadata.sorted_tables
        }


def test_a_dry_run_after_a_real_run_changes_no_row_and_calls_no_wecom(
    tmp_path: Path, db: Database, simulator: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    vip = "wm_dry_vip"
    for userid, customers in {"zhang": [vip], "li": [vip, "wm_dry_small"]}.items():
        simulator.add_staff(userid, userid)
        for ext in customers:
            simulator.add_relation(userid, ext)
    config = default_tiers_config(tmp_path, db.url, simulator.api_base)
    as_of = ["--as-of", AS_OF.isoformat()]
    assert main(["--config", str(config), "sync"]) == 0
    with db.write() as s:
        c = s.scalars(select(Customer).where(Customer.external_userid == vip)).one()
        order(s, c, 300, local(3))
    assert main(["--config", str(config), "retier", *as_of]) == 0
    assert main(["--config", str(config), "push"]) == 0
    with db.write() as s:  # fresh data: the VIP's big order
        c = s.scalars(select(Customer).where(Customer.external_userid == vip)).one()
        order(s, c, 6000, local(1))
    before = _every_row(db)
    simulator.reset_counters()
    capsys.readouterr()

    assert main(["--config", str(config), "retier", "--dry-run", *as_of]) == 0
    out = capsys.readouterr().out
    assert _every_row(db) == before
    assert simulator.calls == {}
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "价值分层（value）：1 人变动" in out
    assert "低价值 → 高价值 1" in lines
    assert "至多 2 次 mark_tag" in out  # the VIP's two relations
    assert "已排队" not in out


BAD_RULE = (
    '[[tiering.dimensions]]\nname = "value"\ntag_group = "价值"\n'
    'tiers = [{ tag = "高价值", when = "spend_365d >= 5000 and channel > 3" }]\n'
)


@pytest.mark.parametrize("command", ["serve", "worker", "scheduler"])
def test_a_bad_rule_stops_each_long_running_command_at_start_up(
    tmp_path: Path, db_url: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(toml_text(base_config(db_url)) + BAD_RULE, encoding="utf-8")
    assert main(["--config", str(config), command]) == 2
    err = capsys.readouterr().err
    assert (
        "  - tiering.dimensions[0].tiers[0].when: '>' compares numbers only,"
        " but 'channel' is a string"
    ) in err
    assert "    spend_365d >= 5000 and channel > 3\n" + " " * 27 + "^" * 11 + "\n" in err
    assert "Traceback" not in err


def test_the_one_scheduler_books_the_nightly_retier_at_three_in_shanghai(db_url: str) -> None:
    rt = Runtime(settings_from_mapping(base_config(db_url), environ={}))
    background = Background(rt)
    try:
        background.start_scheduler()
        assert background.scheduler is not None
        job = background.scheduler.get_job("retier")
        assert job is not None
        nxt = job.next_run_time.astimezone(ZoneInfo("Asia/Shanghai"))
        assert (nxt.time(), nxt.utcoffset()) == (
            time(3, 0),
            ZoneInfo("Asia/Shanghai").utcoffset(nxt),
        )
        assert str(job.trigger.timezone) == "Asia/Shanghai"
        assert background.leader.leads()  # the one scheduler: it holds the lease
    finally:
        background.stop()
        rt.close()


def test_the_api_gives_since_and_why_no_tier_matched(db: Database) -> None:
    data = base_config(db.url) | tomllib.loads(default_tiers_text())
    app = create_app(settings_from_mapping(data, environ={}))
    try:
        with db.write() as s:
            c = Customer(external_userid="wm_api")
            s.add(c)
            s.flush()
            order(s, c, 6000, datetime.now(UTC) - timedelta(days=3))
        rt: Runtime = app.extensions["tagbot"]
        report, _ = retier_configured(**parts.retier(rt))  # now: the API explains as of now
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        body = app.test_client().get("/api/customers/wm_api", headers=auth).json
        assert body is not None
        by_dim = {t["dimension"]: t for t in body["tiers"]}
        assert by_dim["value"]["tier"] == "高价值"
        since = datetime.fromisoformat(by_dim["value"]["since"])
        assert since.replace(microsecond=0) == report.as_of.replace(microsecond=0)
        member = by_dim["member_level"]
        assert (member["tier"], member["since"]) == (None, None)
        assert member["metrics"] == {"profile.会员等级": None}
        assert any("缺失" in line for line in member["lines"])
        churn = by_dim["churn"]
        assert (churn["tier"], churn["now"]) == (None, None)
        assert any("没有满足条件的层级" in line for line in churn["lines"])
        # overdue_ratio is missing for one order: the rule is unknown, not false
        assert any(line.strip().startswith("流失预警：未知") for line in churn["lines"])
        assert churn["metrics"]["days_since_last_order"] == 3
    finally:
        app.extensions["tagbot"].close()

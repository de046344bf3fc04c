"""The re-tier from the outside: `tagbot retier`, `customer show`, the API, fresh data."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import Base, RetierRun, TierAssignment, TouchedCustomer
from bot.tiering.defaults import default_tiers_text
from handlers.app import create_app
from jobs.tiering import retier_touched
from tagbot.cli import main
from tests.support import parts
from tests.support.configs import write_config
from tests.support.corp import ADMIN_TOKEN, base_config
from tests.tier_metrics_factory import AS_OF, customer, local, order, relation, staff

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def config(tmp_path: Path, db: Database) -> Path:
    """A config file on the test database with the default tier dimensions."""
    return write_config(tmp_path, db.url, default_tiers=True)


@pytest.fixture
def tier_app(db: Database) -> Iterator[Flask]:
    data = base_config(db.url) | tomllib.loads(default_tiers_text())
    app = create_app(settings_from_mapping(data, environ={}))
    yield app
    app.extensions["tagbot"].close()


def _counts(db: Database) -> dict[str, int]:
    with db.read() as s:
        return {
            t.name: int(s.scalar(select(func.count()).select_from(t)) or 0)
            for t in Base.metadata.sorted_tables
        }


def _vip(db: Database) -> None:
    with db.write() as s:
        c = customer(s, "wm_vip")
        order(s, c, 6000, local(3))
        relation(s, c, staff(s, "zhang"), added=local(40))
        order(s, customer(s, "wm_small"), 300, local(3))


def test_dry_run_prints_moves_and_calls_and_writes_nothing(
    config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    _vip(db)
    before = _counts(db)
    code = main(["--config", str(config), "retier", "--dry-run", "--as-of", AS_OF.isoformat()])
    out = capsys.readouterr().out
    assert code == 0
    assert _counts(db) == before
    assert "试运行" in out
    assert "价值分层（value）：2 人变动" in out
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "（无） → 高价值 1" in lines
    assert "（无） → 低价值 1" in lines
    assert "至多 1 次 mark_tag" in out


def test_run_then_show_explains_every_dimension(
    config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    _vip(db)
    assert main(["--config", str(config), "retier", "--as-of", AS_OF.isoformat()]) == 0
    capsys.readouterr()
    show = ["customer", "show", "wm_vip", "--as-of", AS_OF.isoformat()]
    assert main(["--config", str(config), *show]) == 0
    out = capsys.readouterr().out
    assert "价值分层：高价值" in out
    assert "当前层级 高价值，自 2026-06-15 起（0 天）" in out
    assert "指标：orders_365d = 1，spend_365d = 6000" in out
    assert "spend_365d = 6000" in out
    assert "会员等级：—" in out
    assert "profile.会员等级 缺失" in out
    # A dimension with no match says why none did.
    assert "流失预警：—" in out
    assert "没有满足条件的层级" in out


def test_show_names_each_dimension_once_and_says_a_tier_entered_today(
    config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    _vip(db)
    assert main(["--config", str(config), "retier", "--as-of", AS_OF.isoformat()]) == 0
    capsys.readouterr()
    show = ["--config", str(config), "customer", "show", "wm_vip", "--as-of"]
    assert main([*show, AS_OF.isoformat()]) == 0
    today = capsys.readouterr().out
    # Entered today: said so, with the rule that put the customer there (`when`, not `stay`).
    assert "  价值分层：高价值 — 今天进入（之前：无）：首个满足条件的层级\n" in today
    assert "    高价值：满足 — spend_365d = 6000 ≥ 5000\n" in today
    assert "满足保留条件" not in today
    assert "  流失预警：—（没有满足条件的层级）\n" in today
    # Each dimension is named once: no second line "value：高价值 — …" under its heading.
    assert "value：" not in today
    assert "churn：" not in today

    assert main([*show, (AS_OF + timedelta(days=1)).isoformat()]) == 0
    later = capsys.readouterr().out
    assert "  价值分层：高价值 — 保持 高价值（满足保留条件 stay）\n" in later
    assert "    高价值（保留条件）：满足 — spend_365d = 6000 ≥ 4000\n" in later


def test_errors_are_one_line(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(config), "retier", "--as-of", "yesterday"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: --as-of: 不是 ISO 8601 时间：'yesterday'"


def test_api_explains_tiers(tier_app: Flask, db: Database) -> None:
    _vip(db)
    rt = tier_app.extensions["tagbot"]
    from bot.retier import retier_configured

    retier_configured(**parts.retier(rt), as_of=AS_OF)
    body = tier_app.test_client().get("/api/customers/wm_vip", headers=AUTH).json
    assert body is not None
    value = next(t for t in body["tiers"] if t["dimension"] == "value")
    assert (value["tag_group"], value["tier"]) == ("价值分层", "高价值")
    assert value["metrics"] == {"orders_365d": 1, "spend_365d": 6000}
    assert any("spend_365d = 6000 ≥ 4000" in line for line in value["lines"])
    assert len(body["tiers"]) == 13


def test_fresh_order_retiers_that_customer_without_a_full_run(
    tier_app: Flask, db: Database
) -> None:
    with db.write() as s:
        c = customer(s, "wm_new")
        order(s, c, 100, local(30))
        cid = c.id
    rt = tier_app.extensions["tagbot"]
    from bot.retier import retier_configured

    retier_configured(**parts.retier(rt))
    resp = tier_app.test_client().post(
        "/api/orders",
        json=[
            {
                "order_id": "big1",
                "external_userid": "wm_new",
                "amount": "8000.00",
                "paid_at": "2026-01-01T10:00:00+08:00",
                "status": "paid",
            }
        ],
        headers=AUTH,
    )
    assert resp.status_code == 200
    with db.read() as s:
        assert s.scalar(select(TouchedCustomer.customer_id)) == cid
    assert retier_touched(rt, quiet=timedelta(0)) == 1
    assert retier_touched(rt, quiet=timedelta(0)) == 0
    with db.read() as s:
        tier = s.scalar(
            select(TierAssignment.tier).where(
                TierAssignment.customer_id == cid, TierAssignment.dimension == "value"
            )
        )
        scopes = s.scalars(select(RetierRun.scope).order_by(RetierRun.id)).all()
        touched_left = s.scalar(select(func.count()).select_from(TouchedCustomer))
    assert tier == "高价值"
    assert scopes == ["full", "touched"]
    assert touched_left == 0


def test_the_scheduler_runs_the_nightly_retier(tier_app: Flask, db: Database) -> None:
    from jobs import registry
    from jobs.tiering import RETIER_JOB, TOUCHED_WORKER

    rt = tier_app.extensions["tagbot"]
    assert RETIER_JOB in registry.scheduled()
    assert TOUCHED_WORKER in registry.workers()
    assert RETIER_JOB.cron(rt.settings) == "0 3 * * *"
    _vip(db)
    RETIER_JOB.run(rt)
    with db.read() as s:
        runs = s.execute(select(RetierRun.scope, RetierRun.changed_customers)).all()
    assert [tuple(r) for r in runs] == [("full", 2)]


def test_the_worker_retiers_a_fresh_big_order_within_a_minute(db: Database) -> None:
    import time

    import requests

    from tests.support.live import LiveServer

    with db.write() as s:
        cid = customer(s, "wm_live").id
    data = base_config(db.url) | tomllib.loads(default_tiers_text())
    server = LiveServer(settings_from_mapping(data, environ={}), jobs=True).start()
    try:
        order_row = {
            "order_id": "live1",
            "external_userid": "wm_live",
            "amount": "9000.00",
            "paid_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
            "status": "paid",
        }
        resp = requests.post(f"{server.url}/api/orders", json=[order_row], headers=AUTH, timeout=10)
        assert resp.status_code == 200
        deadline = time.monotonic() + 60
        tier = None
        while tier is None and time.monotonic() < deadline:
            time.sleep(0.5)
            with db.read() as s:
                tier = s.scalar(
                    select(TierAssignment.tier).where(
                        TierAssignment.customer_id == cid, TierAssignment.dimension == "value"
                    )
                )
        assert tier == "高价值"
        with db.read() as s:
            assert s.scalars(select(RetierRun.scope)).all() == ["touched"]
    finally:
        server.stop()

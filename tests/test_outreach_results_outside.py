"""The uplift report from the outside: `tagbot outreach results NAME [--json]` and the API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bot.db import Database
from bot.db.types import utcnow
from tagbot.cli import main
from tests.support import outreach_data as data
from tests.support.configs import write_config
from tests.support.corp import ADMIN_TOKEN, base_config

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def config(tmp_path: Path, db: Database) -> Path:
    return write_config(tmp_path, db.url)


def _campaign(db: Database, name: str, *, people: int, start_days_ago: int) -> None:
    cid = data.campaign(db, name)
    as_of = utcnow().replace(microsecond=0) - timedelta(days=start_days_ago)
    run = data.run(db, cid, as_of)
    ids = data.customers(db, people, prefix=f"wm_{name}")
    half = people // 2
    data.synthetic_run(db, run, as_of, ids[:half], base=0.1, effect=0.05, seed=4, tier="高价值")
    data.synthetic_run(db, run, as_of, ids[half:], base=0.1, effect=0.05, seed=5, tier="沉睡客户")


def test_results_table_in_chinese(
    config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    _campaign(db, "winback", people=6000, start_days_ago=20)  # 30-day window still open
    assert main(["--config", str(config), "outreach", "results", "winback"]) == 0
    out = capsys.readouterr().out
    assert "活动「winback」效果" in out
    assert "已发送 1 次运行" in out
    header = next(line for line in out.splitlines() if line.startswith("指标"))
    for column in ("实验组", "对照组", "绝对提升 [95% CI]", "相对提升"):
        assert column in header
    for tier in ("【全部】", "【高价值】", "【沉睡客户】"):
        assert tier in out
    assert "7 天转化率" in out
    assert "个百分点 [" in out
    month = next(line for line in out.splitlines() if line.startswith("30 天转化率"))
    assert "观察期未满" in month
    assert "区间：比例差用 Newcombe (Wilson) 法，均值差用 Welch t 法" in out
    assert "触达与否不是随机分配的" in out
    assert "样本太少" not in out


def test_results_json_and_small_warning(
    config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    _campaign(db, "tiny", people=40, start_days_ago=40)
    assert main(["--config", str(config), "outreach", "results", "tiny"]) == 0
    assert "⚠ 样本太少，暂不能下结论（实验组" in capsys.readouterr().out
    assert main(["--config", str(config), "outreach", "results", "tiny", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    overall = body["segments"][0]
    assert overall["tier"] == "全部"
    assert overall["warning"].startswith("样本太少")
    metrics = {m["key"]: m for m in overall["intent_to_treat"]}
    n = metrics["conversion_30d"]["treatment"]["n"] + metrics["conversion_30d"]["holdout"]["n"]
    assert n == 40
    assert metrics["conversion_30d"]["elapsed"]


def test_results_unknown_campaign_is_one_line(
    config: Path, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config), "outreach", "results", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: 没有名为 'nope' 的活动记录")
    assert "Traceback" not in err


@pytest.fixture
def api(db: Database) -> Iterator[FlaskClient]:
    from bot.config import settings_from_mapping
    from handlers.app import create_app

    app: Flask = create_app(settings_from_mapping(base_config(db.url), environ={}))
    yield app.test_client()
    app.extensions["tagbot"].close()


def test_results_api(api: FlaskClient, db: Database) -> None:
    _campaign(db, "vip", people=3000, start_days_ago=40)
    url = "/api/outreach/campaigns/vip/results"
    assert api.get(url).status_code == 401
    answer = api.get(url, headers=AUTH)
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["campaign"] == "vip"
    assert body["runs"] == 1
    assert body["method"].startswith("区间：比例差用 Newcombe")
    assert [s["tier"] for s in body["segments"]] == ["全部", "沉睡客户", "高价值"]
    conv = next(m for m in body["segments"][0]["intent_to_treat"] if m["key"] == "conversion_30d")
    assert conv["treatment"]["n"] + conv["holdout"]["n"] == 3000
    assert (
        conv["absolute_lift"]["low"]
        < conv["absolute_lift"]["value"]
        < conv["absolute_lift"]["high"]
    )
    early = api.get(f"{url}?as_of=2000-01-01T08:00", headers=AUTH).get_json()
    assert early["as_of"] == "2000-01-01T00:00:00+00:00"  # naive: Asia/Shanghai
    assert all(not m["elapsed"] for m in early["segments"][0]["intent_to_treat"])
    bad = api.get(f"{url}?as_of=yesterday", headers=AUTH)
    assert bad.status_code == 422
    assert "as_of" in bad.get_json()["message"]
    missing = api.get("/api/outreach/campaigns/nope/results", headers=AUTH)
    assert missing.status_code == 404
    assert "没有名为 'nope' 的活动记录" in missing.get_json()["message"]

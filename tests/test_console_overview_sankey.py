"""概览's 分层流转 card: the last full re-tier's moves as a Sankey, per chosen dimension."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.models import RetierRun, TierRunMove
from bot.db.types import utcnow
from handlers.app import create_app
from tests.support.console import DIMENSION, console_config, seed_overview, sign_in_with_token
from wecom_sim import Simulator

CHURN = {
    "name": "churn",
    "tag_group": "流失风险",
    "tiers": [{"tag": "流失预警", "when": "spend_365d < 0"}],
}


@pytest.fixture
def console(db_url: str, simulator: Simulator) -> Iterator[Flask]:
    """The console with two dimensions: value (seeded moves) and churn."""
    cfg = console_config(db_url, simulator)
    cfg["tiering"] = {"dimensions": [DIMENSION, CHURN]}
    app = create_app(settings_from_mapping(cfg, environ={}))
    yield app
    app.extensions["tagbot"].close()


@pytest.fixture
def web(console: Flask) -> FlaskClient:
    return console.test_client()


def _page(web: FlaskClient, query: str = "") -> str:
    answer = web.get(f"/admin/{query}")
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def _charts(page: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(page.split('id="chart-data">')[1].split("</script>")[0])
    return loaded


def _moves_in_db(db: Database, run_id: int, dimension: str) -> set[tuple[str, str, int]]:
    """Return the run's moves as the sankey names them: ("无（前）"/"tier（前）", "tier", n)."""
    with db.read() as session:
        rows = session.execute(
            select(TierRunMove.from_tier, TierRunMove.to_tier, TierRunMove.customers).where(
                TierRunMove.run_id == run_id, TierRunMove.dimension == dimension
            )
        ).all()
    return {(f"{f or '无'}（前）", t or "无", n) for f, t, n in rows}


def _links(spec: dict[str, Any]) -> set[tuple[str, str, int]]:
    return {(link["source"], link["target"], link["value"]) for link in spec["links"]}


def _last_full_run(db: Database) -> int:
    with db.read() as session:
        found = session.scalar(
            select(RetierRun.id)
            .where(RetierRun.scope == "full", RetierRun.finished_at.is_not(None))
            .order_by(RetierRun.id.desc())
            .limit(1)
        )
    assert found is not None
    return found


def test_the_sankey_holds_the_last_full_runs_moves_as_in_the_database(
    console: Flask, web: FlaskClient, db: Database
) -> None:
    seed_overview(db, now=utcnow(), tz=console.extensions["tagbot"].settings.tz)
    sign_in_with_token(web)
    page = _page(web)
    run_id = _last_full_run(db)
    spec = _charts(page)["moves"]
    assert spec["kind"] == "sankey"
    # The first run tiers everyone from 无: 1 高价值, 3 普通.
    assert _links(spec) == _moves_in_db(db, run_id, "value")
    assert _links(spec) == {("无（前）", "高价值", 1), ("无（前）", "普通", 3)}
    assert spec["nodes"] == ["无（前）", "高价值", "普通"]
    assert f'data-run="{run_id}" data-dimension="value"' in page
    assert "变动 4 人" in page
    # The selector: the first configured dimension is chosen, each dimension a link.
    assert (
        'href="/admin/?dimension=value#tier-flow" data-dimension="value" aria-current="page"'
        in page
    )
    assert 'href="/admin/?dimension=churn#tier-flow" data-dimension="churn">' in page

    # A later full run (written as run_stats writes it): the chart follows it, tiers in order.
    with db.write() as session:
        run = RetierRun(scope="full", started_at=utcnow(), finished_at=utcnow() + timedelta(1))
        session.add(run)
        session.flush()
        session.add_all(
            [
                TierRunMove(run_id=run.id, dimension="value", from_tier=f, to_tier=t, customers=n)
                for f, t, n in (("普通", "高价值", 2), ("高价值", "普通", 1), ("普通", None, 5))
            ]
        )
        later = run.id
    spec = _charts(_page(web, "?dimension=value"))["moves"]
    assert _links(spec) == _moves_in_db(db, later, "value")
    assert spec["links"][0] == {"source": "普通（前）", "target": "无", "value": 5}  # largest first
    assert spec["nodes"] == ["高价值（前）", "普通（前）", "高价值", "普通", "无"]


def test_a_dimension_nobody_moved_in_shows_the_empty_state(
    console: Flask, web: FlaskClient, db: Database
) -> None:
    seed_overview(db, now=utcnow(), tz=console.extensions["tagbot"].settings.tz)
    sign_in_with_token(web)
    page = _page(web, "?dimension=churn")
    assert 'id="tier-flow-empty"' in page
    assert "流失风险没有客户变动层级" in page
    assert "moves" not in _charts(page)
    assert 'data-chart="moves"' not in page
    assert 'data-dimension="churn" aria-current="page"' in page


def test_before_the_first_full_run_the_card_says_what_to_run(web: FlaskClient) -> None:
    sign_in_with_token(web)
    page = _page(web)
    assert 'id="tier-flow-empty"' in page
    assert "还没有完成过全量分层" in page
    assert "moves" not in _charts(page)


def test_an_unknown_dimension_is_a_404_page_not_a_traceback(web: FlaskClient) -> None:
    sign_in_with_token(web)
    answer = web.get("/admin/?dimension=nope")
    assert answer.status_code == 404
    assert "Traceback" not in answer.get_data(as_text=True)

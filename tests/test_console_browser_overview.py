"""概览's 分层流转 Sankey in a real browser: ECharts draws the last full run's moves."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bot.db import Database
from bot.db.models import RetierRun, TierRunMove
from tests.support.console_browser import Served, Tab, screenshot, sign_in_with_token

pytestmark = pytest.mark.slow  # a real `tagbot serve` process and a browser


def test_the_sankey_draws_the_last_full_runs_moves(
    tab: Tab, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tab.page
    sign_in_with_token(page, served.url)
    page.wait_for_function(
        "() => window.echarts && echarts.getInstanceByDom(document.querySelector("
        "'[data-chart=moves]'))"
    )
    db = Database(served.db_url)
    try:
        with db.read() as session:
            run_id = session.scalar(
                select(func.max(RetierRun.id)).where(
                    RetierRun.scope == "full", RetierRun.finished_at.is_not(None)
                )
            )
            in_db = {
                (f"{f or '无'}（前）", t or "无", n)
                for f, t, n in session.execute(
                    select(TierRunMove.from_tier, TierRunMove.to_tier, TierRunMove.customers).where(
                        TierRunMove.run_id == run_id, TierRunMove.dimension == "value"
                    )
                ).all()
            }
    finally:
        db.dispose()
    drawn = page.evaluate(
        """() => {
            const s = echarts.getInstanceByDom(
                document.querySelector('[data-chart=moves]')).getOption().series[0];
            return {type: s.type, nodes: s.data.map(n => n.name),
                    links: s.links.map(l => [l.source, l.target, l.value])};
        }"""
    )
    assert drawn["type"] == "sankey"
    assert in_db == {("无（前）", "高价值", 1), ("无（前）", "普通", 3)}
    assert {tuple(link) for link in drawn["links"]} == in_db
    assert drawn["nodes"] == ["无（前）", "高价值", "普通"]
    assert page.get_attribute("#tier-flow-run", "data-run") == str(run_id)
    assert tab.errors == []  # no script error, no CSP violation
    page.wait_for_timeout(1500)  # the screenshot only: let ECharts' entry animation end
    screenshot(page, "overview-sankey", capsys)

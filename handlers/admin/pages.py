"""The console's 概览 page."""

from __future__ import annotations

from typing import Any

from flask import abort, render_template, request
from flask.typing import ResponseReturnValue

from bot.db.types import utcnow
from bot.reports import overview, tier_movement
from bot.reports.definitions import define
from bot.reports.latest_adds import latest_adds
from handlers.admin.blueprint import bp
from handlers.context import runtime

TREND_RANGES = (7, overview.TREND_DAYS)  # 近7天, 近30天
NO_TIER = "无"
BEFORE = "（前）"  # ECharts' sankey needs the "from" nodes named apart from the "to" nodes


def sankey_spec(matrix: tier_movement.MovementMatrix, tiers: list[str]) -> dict[str, Any]:
    """Return the sankey chart's data: "from" nodes (suffixed 「（前）」), "to" nodes, links."""

    def order(names: set[str]) -> list[str]:
        return [t for t in tiers if t in names] + sorted(names - set(tiers))

    sources = {c.from_tier or NO_TIER for c in matrix.cells}
    targets = {c.to_tier or NO_TIER for c in matrix.cells}
    return {
        "kind": "sankey",
        "nodes": [n + BEFORE for n in order(sources)] + order(targets),
        "links": [
            {
                "source": (c.from_tier or NO_TIER) + BEFORE,
                "target": c.to_tier or NO_TIER,
                "value": c.customers,
            }
            for c in matrix.cells
        ],
    }


@bp.get("/", endpoint="overview")
def overview_page() -> ResponseReturnValue:
    """概览: KPI cards with 较昨日, the trend, tiers, the last runs, queues and WeCom use."""
    rt = runtime()
    dimensions = {d.name: d for d in rt.settings.tiering.dimensions}
    dimension = request.args.get("dimension") or next(iter(dimensions), None)
    if dimension is not None and dimension not in dimensions:
        abort(404, description=f"没有名为 {dimension} 的分层维度")
    with rt.db.read() as session:
        view = overview.overview(session=session, settings=rt.settings, now=utcnow())
        adds = latest_adds(session=session, staff_names=rt.settings.staff)
        moves = (
            None
            if dimension is None
            else tier_movement.movement_matrix(None, dimension, session=session)
        )
    groups = {d.name: d.tag_group for d in rt.settings.tiering.dimensions}
    charts: dict[str, Any] = {
        "trend": {
            "kind": "line",
            "categories": [d.day.strftime("%m-%d") for d in view.trend.days],
            "series": [
                {"name": "新增", "values": [d.added for d in view.trend.days]},
                {"name": "流失", "values": [d.lost for d in view.trend.days]},
                {"name": "净增", "values": [d.net for d in view.trend.days]},
            ],
            "range": TREND_RANGES[0],
        },
        **{
            f"tiers-{name}": {
                "kind": "bar",
                "title": groups.get(name, name),
                "categories": [t.tier for t in sizes.sizes],
                "values": [t.customers for t in sizes.sizes],
            }
            for name, sizes in view.tiers.items()
        },
    }
    if moves is not None and dimension is not None and moves.cells:
        tiers = [t.tag for t in dimensions[dimension].tiers]
        charts["moves"] = sankey_spec(moves, tiers)
    empty = view.data_as_of is None and view.last_runs.last is None and not adds
    return render_template(
        "admin/overview.html",
        view=view,
        adds=adds,
        groups=groups,
        charts=charts,
        empty=empty,
        missed=rt.missed_welcomes.value,
        ranges=TREND_RANGES,
        dimension=dimension,
        moves=moves,
        define=define,
    )

"""The console's 概览 page."""

from __future__ import annotations

from typing import Any

from flask import render_template
from flask.typing import ResponseReturnValue

from bot.db.types import utcnow
from bot.reports import overview
from bot.reports.definitions import define
from bot.reports.latest_adds import latest_adds
from handlers.admin.blueprint import bp
from handlers.context import runtime

TREND_RANGES = (7, overview.TREND_DAYS)  # 近7天, 近30天


@bp.get("/", endpoint="overview")
def overview_page() -> ResponseReturnValue:
    """概览: KPI cards with 较昨日, the trend, tiers, the last runs, queues and WeCom use."""
    rt = runtime()
    with rt.db.read() as session:
        view = overview.overview(session=session, settings=rt.settings, now=utcnow())
        adds = latest_adds(session=session, staff_names=rt.settings.staff)
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
        define=define,
    )

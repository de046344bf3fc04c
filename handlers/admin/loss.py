"""流失: 流失预警 members now, 已流失 (客户删员工) and 员工删客户 apart, a trend, .xlsx export."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Response, render_template
from flask.typing import ResponseReturnValue

from bot.db.types import utcnow
from bot.reports import channel_stats
from bot.reports import loss as reports
from bot.reports.definitions import define
from handlers.admin import guard
from handlers.admin.blueprint import bp
from handlers.context import runtime

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

guard.NAV_CHILDREN["admin.loss"] |= {"admin.loss_export"}


@bp.get("/loss", endpoint="loss")
def loss_page() -> ResponseReturnValue:
    """流失: the three lists and the 30-day trend."""
    rt = runtime()
    today = channel_stats.local_today(rt.settings.tz, utcnow())
    with rt.db.read() as session:
        view = reports.loss_view(
            rt.settings.tiering, session=session, today=today, staff_names=rt.settings.staff
        )
    charts: dict[str, Any] = {
        "loss-trend": {
            "kind": "line",
            "categories": [d.day.strftime("%m-%d") for d in view.trend],
            "series": [
                {"name": "客户删员工", "values": [d.lost_by_customer for d in view.trend]},
                {"name": "员工删客户", "values": [d.lost_by_staff for d in view.trend]},
                {"name": "流失预警人数", "values": [d.churn_warning for d in view.trend]},
            ],
            "range": reports.TREND_DAYS,
        }
    }
    empty = not (view.at_risk_total or view.by_customer_total or view.by_staff_total)
    return render_template(
        "admin/loss.html",
        view=view,
        charts=charts,
        empty=empty,
        shown=reports.SHOWN,
        define=define,
    )


@bp.get("/loss/export.xlsx", endpoint="loss_export")
def loss_export() -> ResponseReturnValue:
    """The three lists as one .xlsx workbook (every row, a sheet each)."""
    rt = runtime()
    with rt.db.read() as session:
        body = reports.loss_workbook(
            rt.settings.tiering, session=session, tz=rt.settings.tz, staff_names=rt.settings.staff
        )
    day = channel_stats.local_today(rt.settings.tz, utcnow()).isoformat()
    name = f"流失客户-{day}.xlsx"
    return Response(
        body,
        mimetype=XLSX,
        headers={
            "Content-Disposition": f'attachment; filename="loss-{day}.xlsx"; '
            f"filename*=UTF-8''{quote(name)}"
        },
    )

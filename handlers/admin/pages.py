"""The console's pages: 概览 and 系统 (so far)."""

from __future__ import annotations

from typing import Any

from flask import redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bot.callbacks.welcome import missed_welcomes
from bot.console import audit, sessions
from bot.db.types import utcnow
from bot.reports import overview
from bot.reports.definitions import define
from bot.reports.latest_adds import latest_adds
from handlers import throttle
from handlers.admin import guard
from handlers.admin.blueprint import bp
from handlers.context import runtime

AUDIT_PAGE = 50
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
        missed=missed_welcomes(rt),
        ranges=TREND_RANGES,
        define=define,
    )


@bp.get("/system")
def system() -> ResponseReturnValue:
    """系统: the console's audit log and its sessions."""
    rt = runtime()
    with rt.db.read() as session:
        entries = audit.recent(session=session, limit=AUDIT_PAGE)
        total = audit.count(session=session)
        live = sessions.count_live(session=session, now=utcnow(), expiry=guard.expiry())
    return render_template(
        "admin/system.html", entries=entries, total=total, live_sessions=live, page=AUDIT_PAGE
    )


@bp.get("/system/audit")
def audit_rows() -> ResponseReturnValue:
    """More audit rows, older than `before` (an htmx fragment)."""
    before = request.args.get("before", type=int)
    with runtime().db.read() as session:
        entries = audit.recent(session=session, limit=AUDIT_PAGE, before_id=before)
    return render_template("admin/_audit_rows.html", entries=entries, page=AUDIT_PAGE)


@bp.post("/system/sessions/revoke")
def revoke_sessions() -> ResponseReturnValue:
    """End every console session but this one (管理员)."""
    web = guard.current()
    assert web is not None
    with runtime().db.write() as session:
        before = sessions.count_live(session=session, now=utcnow(), expiry=guard.expiry())
        ended = sessions.end_others(web.id_hash, session=session)
        audit.record(
            session=session,
            actor=web.actor,
            role=web.role,
            action="sessions_revoked",
            before={"sessions": before},
            after={"sessions": 1, "ended": ended},
            address=throttle.client_address(runtime().settings.server),
        )
    return redirect(url_for("admin.system"), code=303)

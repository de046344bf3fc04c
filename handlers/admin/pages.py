"""The console's pages: 概览 and 系统 (so far)."""

from __future__ import annotations

from typing import Any

from flask import redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bot.console import audit, overview, sessions
from bot.db.types import utcnow
from handlers import throttle
from handlers.admin import guard
from handlers.admin.blueprint import bp
from handlers.context import runtime

AUDIT_PAGE = 50


@bp.get("/", endpoint="overview")
def overview_page() -> ResponseReturnValue:
    """概览: today's KPIs, tier sizes per dimension, the last re-tier, the latest adds."""
    rt = runtime()
    with rt.db.read() as session:
        view = overview.load(
            session,
            now=utcnow(),
            tz=rt.settings.tz,
            dimensions=rt.settings.tiering.dimensions,
            staff_names=rt.settings.staff,
        )
    charts: dict[str, Any] = {
        f"tiers-{i}": {
            "kind": "bar",
            "title": dim.tag_group,
            "categories": [t.tier for t in dim.tiers],
            "values": [t.customers for t in dim.tiers],
        }
        for i, dim in enumerate(view.dimensions)
    }
    return render_template("admin/overview.html", view=view, charts=charts)


@bp.get("/system")
def system() -> ResponseReturnValue:
    """系统: the console's audit log and its sessions."""
    rt = runtime()
    with rt.db.read() as session:
        entries = audit.recent(session, limit=AUDIT_PAGE)
        total = audit.count(session)
        live = sessions.count_live(session, now=utcnow(), expiry=guard.expiry())
    return render_template(
        "admin/system.html", entries=entries, total=total, live_sessions=live, page=AUDIT_PAGE
    )


@bp.get("/system/audit")
def audit_rows() -> ResponseReturnValue:
    """More audit rows, older than `before` (an htmx fragment)."""
    before = request.args.get("before", type=int)
    with runtime().db.read() as session:
        entries = audit.recent(session, limit=AUDIT_PAGE, before_id=before)
    return render_template("admin/_audit_rows.html", entries=entries, page=AUDIT_PAGE)


@bp.post("/system/sessions/revoke")
def revoke_sessions() -> ResponseReturnValue:
    """End every console session but this one (管理员)."""
    web = guard.current()
    assert web is not None
    with runtime().db.write() as session:
        before = sessions.count_live(session, now=utcnow(), expiry=guard.expiry())
        ended = sessions.end_others(session, web.id_hash)
        audit.record(
            session,
            actor=web.actor,
            role=web.role,
            action="sessions_revoked",
            before={"sessions": before},
            after={"sessions": 1, "ended": ended},
            address=throttle.client_address(runtime().settings.server),
        )
    return redirect(url_for("admin.system"), code=303)

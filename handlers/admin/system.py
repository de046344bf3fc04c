"""The console's 系统 page: sync runs, queues and dead letters, jobs, config, sidebar, audit."""

from __future__ import annotations

from collections.abc import Callable

from flask import redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bot import job_runs
from bot.callbacks import inbox
from bot.config_check import channel_findings
from bot.console import audit, sessions
from bot.console.replay import replay_inbox_event, replay_outbox_operation
from bot.db.types import utcnow
from bot.errors import NotFoundError, TagbotError
from bot.reports import setup_check, system
from bot.reports.definitions import define
from bot.sidebar.selfcheck import check_tickets
from handlers import throttle
from handlers.admin import guard
from handlers.admin.blueprint import bp
from handlers.context import runtime
from jobs.leadership import SCHEDULER_LEASE
from jobs.planned import planned

AUDIT_PAGE = 50
SYNC_RUNS_SHOWN = 10
SYNC_JOB = "sync"


@bp.get("/system", endpoint="system")
def system_page() -> ResponseReturnValue:
    """系统: everything an operator checks when something looks wrong, read-only."""
    rt = runtime()
    now = utcnow()
    jobs = planned(rt.settings, now=now)
    with rt.db.read() as session:
        syncs = job_runs.recent(session=session, job=SYNC_JOB, limit=SYNC_RUNS_SHOWN)
        last = job_runs.latest([j.id for j in jobs], session=session)
        view = {
            "inbox": system.inbox_view(session=session, now=now),
            "outbox": system.outbox_view(session=session),
            "procs": system.processes(session=session, now=now, scheduler_lease=SCHEDULER_LEASE),
            "findings": channel_findings(rt.settings, session=session),
            "sidebar": setup_check.sidebar_checks(
                rt.settings, session=session, last_sync=syncs[0] if syncs else None
            ),
            "entries": audit.recent(session=session, limit=AUDIT_PAGE),
            "total": audit.count(session=session),
            "live_sessions": sessions.count_live(session=session, now=now, expiry=guard.expiry()),
        }
    return render_template(
        "admin/system.html",
        syncs=syncs,
        jobs=jobs,
        last=last,
        page=AUDIT_PAGE,
        define=define,
        inbox_states=inbox.STATUSES,
        **view,
    )


@bp.get("/system/sidebar-tickets")
def sidebar_tickets() -> ResponseReturnValue:
    """Both JS-SDK tickets through the shared store (an htmx fragment, on the operator's click).

    A fresh cached ticket answers without a WeCom call, so the check spends no hourly quota.
    """
    rt = runtime()
    result = check_tickets(db=rt.db, wecom=rt.wecom, tz=rt.settings.tz)
    return render_template("admin/_ticket_check.html", result=result)


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


@bp.post("/system/inbox/<int:event_id>/replay")
def replay_inbox(event_id: int) -> ResponseReturnValue:
    """Put one dead callback back in the queue (管理员; as `tagbot inbox replay`)."""
    rt = runtime()
    refused = _replay(replay_inbox_event, event_id, missing="回调不存在")
    if refused is not None:
        return refused
    rt.handoff.nudge()  # this process's workers look now; others poll
    rt.wakeups.inbox.set()
    return redirect(url_for("admin.system", _anchor="inbox"), code=303)


@bp.post("/system/outbox/<int:operation_id>/replay")
def replay_outbox(operation_id: int) -> ResponseReturnValue:
    """Queue one dead tag write again (管理员; later writes to the same tags win)."""
    refused = _replay(replay_outbox_operation, operation_id, missing="操作不存在")
    if refused is not None:
        return refused
    runtime().wakeups.outbox.set()
    return redirect(url_for("admin.system", _anchor="outbox"), code=303)


def _replay(
    replay: Callable[..., object], row_id: int, *, missing: str
) -> ResponseReturnValue | None:
    """Run one audited replay in a write; return the refusal page, or None when it was done."""
    rt = runtime()
    web = guard.current()
    assert web is not None
    try:
        with rt.db.write() as session:
            replay(
                row_id,
                session=session,
                actor=web.actor,
                role=web.role,
                address=throttle.client_address(rt.settings.server),
            )
    except NotFoundError as exc:
        return guard.refuse(404, missing, str(exc))
    except TagbotError as exc:
        return guard.refuse(409, "不能重放", str(exc))
    return None

"""触达: campaigns, a run's deliveries, a dry-run preview then launch, 效果评估 with ROI.

A launch carries a one-time token from its preview: the first request with it takes a
lease named after it, so a double click or a resubmitted form never launches twice.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any

from flask import abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from bot import leases
from bot.config import CampaignSettings
from bot.console import audit
from bot.errors import NotFoundError
from bot.outreach.plan import OutreachBusyError, RunPlan, plan_run
from bot.outreach.report import ALL_TIERS, CampaignResults, Segment, campaign_results
from bot.outreach.service import get_campaign
from bot.reports import campaigns as reports
from bot.reports.campaign_roi import headline, roi_by_tier
from bot.reports.definitions import define
from bot.runtime import Runtime
from handlers import throttle
from handlers.admin import guard
from handlers.admin.blueprint import bp
from handlers.context import runtime
from handlers.outreach_api import send_later

LAUNCH_FIELD = "launch_token"
LAUNCH_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,40}$")
LAUNCH_LEASE = "console-launch:"
LAUNCH_TTL = 7 * 24 * 3600.0  # a token is spent for longer than any page stays open
CHART_METRICS = ("conversion_30d", "conversion_14d", "conversion_7d")

guard.NAV_CHILDREN["admin.campaigns"] |= {
    "admin.campaign",
    "admin.campaign_preview",
    "admin.campaign_launch",
    "admin.campaign_run",
}


def _campaign(name: str) -> CampaignSettings:
    try:
        return get_campaign(runtime().settings, name)
    except NotFoundError:
        abort(404, description=f"没有名为“{name}”的触达活动（以 config.toml 中的配置为准）。")


@bp.get("/campaigns", endpoint="campaigns")
def campaign_list() -> ResponseReturnValue:
    """触达: every configured campaign with its action, audience, schedule, holdout, last run."""
    rt = runtime()
    with rt.db.read() as session:
        rows = reports.campaign_rows(rt.settings.outreach.campaigns, session=session)
    return render_template(
        "admin/campaigns.html", rows=rows, define=define, quiet=rt.settings.outreach.quiet_hours
    )


def _headline_metric(overall: Segment | None) -> str | None:
    """The longest conversion window that has elapsed (the chart's metric)."""
    if overall is None:
        return None
    return next((k for k in CHART_METRICS if overall.metric(k).elapsed), None)


def _uplift_chart(results: CampaignResults, key: str) -> dict[str, Any]:
    tiers = [s for s in results.segments if s.tier != ALL_TIERS] or list(results.segments)
    points = [s.metric(key).absolute for s in tiers]

    def pct(v: float | None) -> float | None:
        return None if v is None else round(v * 100, 2)

    return {
        "kind": "interval",
        "title": "提升（百分点）",
        "unit": "pp",
        "categories": [s.tier for s in tiers],
        "values": [pct(p.value) if p else None for p in points],
        "low": [pct(p.low) if p else None for p in points],
        "high": [pct(p.high) if p else None for p in points],
    }


def _roi_chart(rows: list[Any]) -> dict[str, Any]:
    shown = [r for r in rows if r.roi is not None and r.tier != ALL_TIERS] or [
        r for r in rows if r.roi is not None
    ]
    return {
        "kind": "interval",
        "title": "ROI",
        "unit": "",
        "baseline": 1,  # break-even: the incremental revenue equals the cost
        "categories": [r.tier for r in shown],
        "values": [round(r.roi.value, 2) for r in shown],
        "low": [None if r.roi.low is None else round(r.roi.low, 2) for r in shown],
        "high": [None if r.roi.high is None else round(r.roi.high, 2) for r in shown],
    }


@bp.get("/campaigns/<name>", endpoint="campaign")
def campaign_page(name: str) -> ResponseReturnValue:
    """A campaign: its settings, its runs, and 效果评估 (uplift per tier, ROI per tier)."""
    rt = runtime()
    config = _campaign(name)
    with rt.db.read() as session:
        runs = reports.recent_runs(name, session=session)
        results = campaign_results(name, session=session) if runs else None
    overall = results.segment(ALL_TIERS) if results and results.segments else None
    metric = _headline_metric(overall)
    roi = roi_by_tier(results, config.cost_per_delivery) if results else []
    charts: dict[str, Any] = {}
    if results and metric:
        charts["uplift"] = _uplift_chart(results, metric)
    if any(r.roi is not None for r in roi):
        charts["roi"] = _roi_chart(roi)
    return render_template(
        "admin/campaign.html",
        c=config,
        row=reports.CampaignRow(config, runs[0] if runs else None),
        runs=runs,
        results=results,
        overall=overall,
        metric=metric,
        roi=roi,
        roi_headline=headline(roi),
        charts=charts,
        define=define,
        all_tiers=ALL_TIERS,
    )


def _counts(plan: RunPlan) -> dict[str, int]:
    if plan.chats is not None:  # group_broadcast: groups, sent by their owners
        return {
            "audience": plan.audience,
            "treatment": len(plan.chats.treatment),
            "holdout": len(plan.chats.holdout),
            "capped": 0,
            "cooling": len(plan.chats.cooling),
            "unreachable": 0,
            "staff": len({t.owner_userid for t in plan.chats.treatment}),
        }
    return {
        "audience": plan.audience,
        "treatment": len(plan.treatment),
        "holdout": len(plan.holdout),
        "capped": len(plan.capped),
        "cooling": len(plan.cooling),
        "unreachable": len(plan.unreachable),
        "staff": len({c.staff_userid for c in plan.treatment if c.staff_userid}),
    }


@bp.get("/campaigns/<name>/preview", endpoint="campaign_preview")
def preview(name: str) -> ResponseReturnValue:
    """试运行: who the campaign would reach now, per staff; writes and sends nothing."""
    rt = runtime()
    config = _campaign(name)
    plan = plan_run(
        config,
        db=rt.db,
        settings=rt.settings,
        as_of=datetime.now(UTC),
        trigger="manual",
        dry_run=True,
    )
    names = rt.settings.staff
    return render_template(
        "admin/campaign_preview.html",
        c=config,
        plan=plan,
        counts=_counts(plan),
        shares=plan.by_staff(),
        staff_name=lambda u: (names.get(u.lower()) if u else None) or u or "（无员工）",
        launch_token=secrets.token_urlsafe(24),
        launch_field=LAUNCH_FIELD,
        action_label=reports.ACTION_LABELS.get(config.action, config.action),
        define=define,
    )


def _spend(rt: Runtime, token: str) -> str | None:
    """Take the token's lease; return its owner, or None when it was spent already.

    Spent tokens' leases are deleted once expired (after LAUNCH_TTL), here: they would
    otherwise stay for ever, one row per launch.
    """
    owner = leases.new_owner()
    with rt.db.write() as session:
        leases.purge_expired(LAUNCH_LEASE, session=session)
        taken = leases.try_acquire(LAUNCH_LEASE + token, owner, LAUNCH_TTL, session=session)
    return owner if taken else None


@bp.post("/campaigns/<name>/launch", endpoint="campaign_launch")
def launch(name: str) -> ResponseReturnValue:
    """启动 (管理员): record a run of the campaign and send it; once per preview."""
    rt = runtime()
    config = _campaign(name)
    web = guard.current()
    assert web is not None  # the guard let only a signed-in 管理员 through
    token = request.form.get(LAUNCH_FIELD, "")
    if not LAUNCH_TOKEN.match(token):
        return guard.refuse(
            400, "请先试运行", "启动前请先打开试运行页面，确认人数后再点“确认启动”。"
        )
    owner = _spend(rt, token)
    if owner is None:
        return guard.refuse(
            409,
            "已经启动过",
            "这次试运行对应的启动已经提交过，不会重复发送。请到活动页面查看运行结果；"
            "如需再次发送，请重新试运行。",
        )
    try:
        plan = plan_run(
            config, db=rt.db, settings=rt.settings, as_of=datetime.now(UTC), trigger="manual"
        )
    except OutreachBusyError as exc:
        with rt.db.write() as session:
            # Nothing launched: the token may be used again.
            leases.release(LAUNCH_LEASE + token, owner, session=session)
        return guard.refuse(409, "请稍后再试", str(exc))
    assert plan.run_id is not None
    counts = _counts(plan)
    with rt.db.write() as session:
        audit.record(
            session=session,
            actor=web.actor,
            role=web.role,
            action="campaign_launched",
            target=name,
            after={"run_id": plan.run_id, **counts},
            address=throttle.client_address(rt.settings.server),
        )
    send_later(rt, plan.run_id)
    return redirect(url_for("admin.campaign_run", run_id=plan.run_id), code=303)


@bp.get("/campaigns/runs/<int:run_id>", endpoint="campaign_run")
def run_page(run_id: int) -> ResponseReturnValue:
    """A run: per staff sent / not sent with WeCom's reasons, per customer delivery state."""
    rt = runtime()
    page = request.args.get("page", default=1, type=int) or 1
    status = request.args.get("status") or None
    if status is not None and status not in reports.DELIVERY_LABELS:
        abort(400, description=f"未知的送达状态：{status}")
    with rt.db.read() as session:
        detail = reports.run_detail(
            run_id, session=session, page=page, status=status, staff_names=rt.settings.staff
        )
    if detail is None:
        abort(404, description=f"没有编号为 {run_id} 的触达运行。")
    return render_template(
        "admin/campaign_run.html",
        d=detail,
        labels=reports.DELIVERY_LABELS,
        action_label=reports.ACTION_LABELS.get(detail.run.action, detail.run.action),
        define=define,
    )

"""Campaigns over HTTP (Bearer token): list them with their last run, run or dry-run one.

    GET  /api/outreach/campaigns                 -> {"campaigns": [...]}
    POST /api/outreach/campaigns/<name>/runs     {"dry_run": false} -> the plan

A real run is recorded before the answer (201, with its run id) and sent by a thread of
this process right after; the `outreach` worker takes it over if the process stops first.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from bot.errors import ValidationError
from bot.outreach.audience import Candidate
from bot.outreach.execute import dispatch_run
from bot.outreach.group_broadcast import ChatTarget
from bot.outreach.plan import RunPlan, plan_run
from bot.outreach.service import get_campaign, last_runs
from bot.runtime import Runtime
from handlers.auth import require_admin
from handlers.context import runtime
from handlers.jsonbody import json_body

bp = Blueprint("outreach_api", __name__, url_prefix="/api/outreach")

BODY_LIMIT = 4096


def _when(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


@bp.get("/campaigns")
@require_admin
def campaigns() -> ResponseReturnValue:
    """Return every configured campaign with its audience settings and its last run."""
    rt = runtime()
    runs = last_runs(rt.db)
    out: list[dict[str, Any]] = []
    for c in rt.settings.outreach.campaigns:
        run = runs.get(c.name)
        out.append(
            {
                "name": c.name,
                "action": c.action,
                "dimension": c.dimension,
                "tiers": list(c.tiers),
                "on_enter": c.on_enter,
                "when": c.when,
                "schedule": c.schedule,
                "holdout_pct": c.holdout_pct,
                "cooldown_days": c.cooldown_days,
                "group_code": c.group_code,
                "min_share": c.min_share if c.action == "group_broadcast" else None,
                "last_run": None
                if run is None
                else {
                    "id": run.id,
                    "status": run.status,
                    "trigger": run.trigger,
                    "as_of": _when(run.as_of),
                    "started_at": _when(run.started_at),
                    "finished_at": _when(run.finished_at),
                    "treatment": run.treatment,
                    "holdout": run.holdout,
                    "capped": run.capped,
                    "cooling": run.cooling,
                    "error": run.error,
                },
            }
        )
    return jsonify(campaigns=out)


def _people(members: list[Candidate]) -> list[dict[str, Any]]:
    return [{"external_userid": m.external_userid, "name": m.name, "tier": m.tier} for m in members]


def _chats(targets: list[ChatTarget]) -> list[dict[str, Any]]:
    return [
        {
            "chat_id": t.chat_id,
            "name": t.name,
            "owner_userid": t.owner_userid,
            "members": t.members,
            "in_tiers": t.in_tiers,
        }
        for t in targets
    ]


def _plan_json(plan: RunPlan) -> dict[str, Any]:
    head = {
        "campaign": plan.campaign,
        "action": plan.action,
        "dry_run": plan.dry_run,
        "run_id": plan.run_id,
        "as_of": _when(plan.as_of),
        "audience": plan.audience,
    }
    if plan.chats is not None:  # group_broadcast: groups, not customers
        chats = plan.chats
        arms = {"treatment": chats.treatment, "holdout": chats.holdout, "cooling": chats.cooling}
        return {
            **head,
            "counts": {arm: len(rows) for arm, rows in arms.items()},
            "groups": {arm: _chats(rows) for arm, rows in arms.items()},
        }
    return {
        **head,
        "counts": {
            "treatment": len(plan.treatment),
            "holdout": len(plan.holdout),
            "capped": len(plan.capped),
            "cooling": len(plan.cooling),
            "unreachable": len(plan.unreachable),
            "in_group": len(plan.in_group),
        },
        "by_staff": [
            {
                "staff_userid": share.staff_userid,
                "treatment": _people(list(share.treatment)),
                "holdout": _people(list(share.holdout)),
                "capped": _people(list(share.capped)),
                "cooling": _people(list(share.cooling)),
            }
            for share in plan.by_staff()
        ],
    }


def send_later(rt: Runtime, run_id: int) -> None:
    """Send the recorded run off the request thread (it may take many WeCom calls)."""

    def send() -> None:
        dispatch_run(
            run_id,
            db=rt.db,
            wecom=rt.wecom,
            settings=rt.settings,
            stopping=rt.stopping,
            alerts_wakeup=rt.wakeups.alerts,
        )

    threading.Thread(target=send, name=f"outreach-run-{run_id}", daemon=True).start()


@bp.post("/campaigns/<name>/runs")
@require_admin
def run(name: str) -> ResponseReturnValue:
    """Plan a run of campaign `name` now; unless `dry_run`, record it and send it."""
    rt = runtime()
    body = json_body(BODY_LIMIT, allow_empty=True) or {}
    if not isinstance(body, dict):
        raise ValidationError("请求体应为 JSON 对象 / the body must be a JSON object")
    unknown = sorted(set(body) - {"dry_run"})
    if unknown:
        raise ValidationError(f"未知字段 / unknown fields: {', '.join(unknown)}")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ValidationError("dry_run 应为 true 或 false / dry_run must be a boolean")
    campaign = get_campaign(rt.settings, name)  # unknown: 404
    plan = plan_run(
        campaign,
        db=rt.db,
        settings=rt.settings,
        as_of=datetime.now(UTC),
        trigger="manual",
        dry_run=dry_run,
    )
    if plan.run_id is not None:
        send_later(rt, plan.run_id)
        return jsonify(_plan_json(plan)), 201
    return jsonify(_plan_json(plan))

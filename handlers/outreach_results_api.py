"""A campaign's measured uplift: GET /api/outreach/campaigns/<name>/results (Bearer token)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from bot.outreach.report import campaign_results
from handlers.auth import require_admin
from handlers.context import runtime

bp = Blueprint("outreach_results_api", __name__, url_prefix="/api/outreach")


@bp.get("/campaigns/<name>/results")
@require_admin
def results(name: str) -> ResponseReturnValue:
    """Return the campaign's uplift per tier, as `tagbot outreach results NAME --json`."""
    rt = runtime()
    with rt.db.read() as session:
        body = campaign_results(name, session=session).to_json()  # unknown name: 404
    return jsonify(body)

"""A campaign's measured uplift: GET /api/outreach/campaigns/<name>/results (Bearer token)."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from bot.errors import ValidationError
from bot.outreach.report import campaign_results
from handlers.auth import require_admin
from handlers.context import runtime

bp = Blueprint("outreach_results_api", __name__, url_prefix="/api/outreach")


@bp.get("/campaigns/<name>/results")
@require_admin
def results(name: str) -> ResponseReturnValue:
    """Return the campaign's uplift per tier, as `tagbot outreach results NAME --json`.

    `?as_of=TIME` (ISO 8601, naive means [app] timezone) measures as of that time.
    """
    rt = runtime()
    as_of: datetime | None = None
    if text := request.args.get("as_of"):
        try:
            as_of = datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError(f"as_of 不是 ISO 8601 时间 / not an ISO time: {text!r}") from None
        as_of = as_of if as_of.tzinfo else as_of.replace(tzinfo=rt.settings.tz)
    with rt.db.read() as session:
        body = campaign_results(name, session=session, now=as_of).to_json()  # unknown: 404
    return jsonify(body)

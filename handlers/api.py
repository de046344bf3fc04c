"""The business system's API: POST /api/orders|events|profiles, GET /api/customers/<id>.

Every route needs `Authorization: Bearer <admin_token>`. Ingest answers 200 with counts
and the rows refused (index, field, reason) even when some rows are bad; 400 when the
body is not a JSON list, 413 when it is too large.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from flask import Blueprint, abort, current_app, jsonify
from flask.typing import ResponseReturnValue

from bot.customers.card import customer_card
from bot.ingest.rows import Kind
from bot.ingest.service import ingest_records
from bot.tiering.why import explain_external
from handlers.auth import require_admin
from handlers.context import dimensions, runtime
from handlers.jsonbody import json_body

bp = Blueprint("api", __name__, url_prefix="/api")

# One request is one transaction; bigger loads belong in `tagbot import` or several calls.
MAX_ROWS = 10_000


def _records() -> list[Any]:
    data = json_body(current_app.config["MAX_CONTENT_LENGTH"])
    if not isinstance(data, list):
        abort(400, description="请求体应为 JSON 数组 / body must be a JSON list of objects")
    if len(data) > MAX_ROWS:
        abort(413, description=f"一次最多 {MAX_ROWS} 行 / at most {MAX_ROWS} rows per request")
    return data


@bp.post("/<any(orders, events, profiles):kind>")
@require_admin
def ingest(kind: str) -> ResponseReturnValue:
    """Validate and store a JSON list of orders, interactions or profiles."""
    records = _records()
    rt = runtime()
    with rt.db.write() as session:
        result = ingest_records(cast(Kind, kind), records, session=session, tz=rt.settings.tz)
        # Encoded before the commit: if the answer cannot be built, nothing is stored.
        return jsonify(result.as_json())


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


@bp.get("/customers/<external_userid>")
@require_admin
def customer(external_userid: str) -> ResponseReturnValue:
    """Return one customer: relations, tags, order totals, attributes, tiers explained."""
    rt = runtime()
    with rt.db.read() as session:
        card = customer_card(external_userid, session=session, display_names=rt.settings.staff)
    dims = dimensions()
    tiers = explain_external(
        rt.db,
        dims,
        external_userid=external_userid,
        tz=rt.settings.app.timezone,
        engine=rt.explain,  # the rank basis is built once a day, not per request
    )
    body = dataclasses.asdict(card) | {"tiers": [dataclasses.asdict(t) for t in tiers]}
    return jsonify(_jsonable(body))

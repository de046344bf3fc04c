"""Liveness and metrics: GET /healthz, GET /metrics."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from flask.typing import ResponseReturnValue
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from bot import metrics
from handlers.context import runtime

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Answer 200 when the database answers, 503 otherwise."""
    try:
        with runtime().db.read() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # any database failure means "not healthy"
        log.warning("health check failed: %s", exc)
        return jsonify(status="unhealthy", database="unreachable"), 503
    body: dict[str, object] = {"status": "ok", "database": "ok"}
    missed = runtime().missed_welcomes.value
    if missed.count:  # a line only when it happened: what an operator must look at
        body["welcomes_missed"] = missed.count
        body["welcomes_missed_last"] = missed.last_at.isoformat() if missed.last_at else None
        body["welcomes_missed_note"] = (
            f"欢迎语未发出 {missed.count} 条（最近一次：{missed.last_reason}）/ "
            f"{missed.count} welcomes missed since start (last: {missed.last_reason})"
        )
    return jsonify(body)


@bp.get("/metrics")
def prometheus_metrics() -> ResponseReturnValue:
    """Expose counters and gauges in the Prometheus text format."""
    rt = runtime()
    metrics.refresh_gauges(db=rt.db, refreshers=rt.refreshers)
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)

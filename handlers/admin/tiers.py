"""分层: per dimension the sizes, the rules, a run's from → to matrix, RFM, export, 规则试算."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from flask import Response, abort, render_template, request
from flask.typing import ResponseReturnValue

from bot.db.types import utcnow
from bot.reports import rule_trial, tier_export, xlsx_stream
from bot.reports.definitions import define
from bot.reports.rule_trial import TrialFrames, TrialResult
from bot.reports.tier_page import TierPage, tier_page
from bot.rules import Dimension
from handlers.admin import guard
from handlers.admin.blueprint import bp
from handlers.context import dimensions, runtime

guard.NAV_CHILDREN["admin.tiers"] |= {"admin.tiers_trial", "admin.tiers_export"}

NONE_PARAM = ""  # 无 (no tier) in the customer list's from/to parameters


def _find(dims: tuple[Dimension, ...], name: str) -> Dimension:
    found = next((d for d in dims if d.name == name), None)
    if found is None:
        abort(404, description=f"没有名为“{name}”的分层维度。")
    return found


def customers_url(dimension: str, **params: str | int | None) -> str:
    """Return the 客户 list filtered to a tier, or to a run's moves (None: 无 as "")."""
    query = {"dimension": dimension}
    query |= {k: NONE_PARAM if v is None else str(v) for k, v in params.items()}
    return f"{bp.url_prefix}/customers?{urlencode(query)}"


def _label(tier: str | None) -> str:
    return "无" if tier is None else tier


def _charts(view: TierPage) -> dict[str, Any]:
    name = view.rules.name
    axis = view.matrix_tiers
    cells = [
        [axis.index(c.to_tier), axis.index(c.from_tier), c.customers]
        for c in view.matrix.cells
        if c.from_tier in axis and c.to_tier in axis
    ]
    run_id = view.matrix.run_id
    links = {
        f"{x},{y}": customers_url(name, run=run_id, **{"from": axis[y], "to": axis[x]})
        for x, y, _ in cells
    }
    return {
        "tier-sizes": {
            "kind": "bar",
            "title": view.rules.tag_group,
            "categories": [t.tier for t in view.sizes.sizes],
            "values": [t.customers for t in view.sizes.sizes],
        },
        "tier-series": {
            "kind": "stack",
            "categories": [d.strftime("%m-%d") for d in view.series.days],
            "series": [
                {"name": t, "values": list(view.series.sizes[t])} for t in view.series.tiers
            ],
        },
        "tier-matrix": {
            "kind": "heatmap",
            "x": [_label(t) for t in axis],
            "y": [_label(t) for t in axis],
            "cells": cells,
            "links": links,
        },
    }


def _render(name: str | None, trial: TrialResult | None = None) -> ResponseReturnValue:
    rt = runtime()
    dims = dimensions()
    if not dims:
        return render_template("admin/tiers.html", dims=dims, view=None, define=define)
    dim = _find(dims, name) if name else dims[0]
    run_id = request.args.get("run", type=int)
    today = utcnow().astimezone(rt.settings.tz).date()
    with rt.db.read() as session:
        view = tier_page(dim, session=session, today=today, run_id=run_id)
    return render_template(
        "admin/tiers.html",
        dims=dims,
        view=view,
        charts=_charts(view),
        trial=trial,
        customers_url=customers_url,
        label=_label,
        define=define,
    )


@bp.get("/tiers", endpoint="tiers")
def tiers_page() -> ResponseReturnValue:
    """分层: one dimension (`?dimension=`, default the first); `?run=` picks the matrix's run."""
    return _render(request.args.get("dimension") or None)


@bp.post("/tiers/trial", endpoint="tiers_trial")
def trial() -> ResponseReturnValue:
    """规则试算: count and sample the customers a `when` matches now (htmx: a fragment)."""
    rt = runtime()
    result = rule_trial.trial(
        request.form.get("when", ""),
        db=rt.db,
        frames=rt.local(TrialFrames),
        tz=rt.settings.tz.key,
        now=utcnow(),
        wait=False,  # the metrics are computed in the background; the answer polls
    )
    if request.headers.get("HX-Request"):
        return render_template("admin/tiers_trial.html", trial=result, define=define)
    return _render(request.form.get("dimension") or None, trial=result)


@bp.get("/tiers/<dimension>/export.xlsx", endpoint="tiers_export")
def export(dimension: str) -> ResponseReturnValue:
    """A tier's members as .xlsx (`?tier=<tag>`), streamed; an unknown dimension or tier: 404."""
    rt = runtime()
    dim = _find(dimensions(), dimension)
    tier = request.args.get("tier", "")
    with rt.db.read() as session:
        if not tier or not tier_export.tier_exists(dimension, tier, session=session):
            abort(404, description=f"维度“{dimension}”下没有客户处于层级“{tier}”。")
    body = tier_export.stream_xlsx(
        rt.db,
        dimension,
        tier,
        tier_export.metric_names(dim),
        tz=rt.settings.tz,
        staff_names=rt.settings.staff,
    )
    filename = f"{dim.tag_group}-{tier}.xlsx"
    return Response(
        body,
        mimetype=xlsx_stream.MIMETYPE,
        headers={
            "Content-Disposition": (
                f"attachment; filename=\"tier-export.xlsx\"; filename*=UTF-8''{quote(filename)}"
            ),
            "X-Accel-Buffering": "no",  # a proxy passes the bytes on as they come
        },
    )

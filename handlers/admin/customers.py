"""客户: the searchable list, its .xlsx export, and a customer's page with tier reasons."""

from __future__ import annotations

from datetime import date
from typing import Any, cast

from flask import abort, render_template, request, send_file
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from bot.db.types import utcnow
from bot.reports import customer_list as cl
from bot.reports.customer_export import write_xlsx
from bot.reports.customer_profile import customer_profile
from bot.reports.customer_terms import term
from bot.reports.customer_tiers import readable_tiers
from bot.tiering.why import explain_customer
from handlers.admin import guard
from handlers.admin.blueprint import bp
from handlers.context import dimensions, runtime

guard.NAV_CHILDREN["admin.customers"] |= {"admin.customer", "admin.customers_export"}

MAX_TEXT = 64


def _text(args: MultiDict[str, str], key: str, limit: int = MAX_TEXT) -> str:
    value = args.get(key, "").strip()
    if len(value) > limit:
        abort(400, description=f"参数 {key} 太长（最多 {limit} 个字符）。")
    return value


def _int(args: MultiDict[str, str], key: str) -> int | None:
    raw = args.get(key, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 18:
        abort(400, description=f"参数 {key} 应为正整数，收到“{raw[:20]}”。")
    return int(raw)


def _day(args: MultiDict[str, str], key: str) -> date | None:
    raw = args.get(key, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        abort(400, description=f"参数 {key} 应为日期 YYYY-MM-DD，收到“{raw[:20]}”。")


def _tier_name(raw: str) -> str | None:
    return None if raw in ("", cl.NO_TIER) else raw


def parse_filter(args: MultiDict[str, str]) -> cl.CustomerFilter:
    """Read the list's filters from the query string (a clear 400 for a bad value)."""
    loss = _text(args, "loss")
    if loss and loss not in cl.LOSS_STATES:
        abort(400, description=f"参数 loss 只能是 {', '.join(cl.LOSS_STATES)}。")
    dimension = _text(args, "dimension")
    run = _int(args, "run")
    move = None
    if run is not None or args.get("from") or args.get("to"):
        if run is None or not dimension:
            abort(400, description="按分层流转筛选需要 run 和 dimension 参数。")
        move = cl.Move(run, _tier_name(_text(args, "from", 30)), _tier_name(_text(args, "to", 30)))
    f = cl.CustomerFilter(
        q=_text(args, "q"),
        dimension=dimension,
        tier=_text(args, "tier", 30),
        move=move,
        channel_id=_int(args, "channel"),
        staff=_text(args, "staff"),
        loss=cast(cl.LossState, loss),
        added_from=_day(args, "added_from"),
        added_to=_day(args, "added_to"),
    )
    if f.added_from and f.added_to and f.added_from > f.added_to:
        abort(400, description="开始日期晚于结束日期。")
    return f


def _dimensions() -> list[tuple[str, str, tuple[str, ...]]]:
    """Each configured dimension: name, tag group, its tiers."""
    return [
        (d.name, d.tag_group, tuple(t.tag for t in d.tiers))
        for d in runtime().settings.tiering.dimensions
    ]


@bp.get("/customers", endpoint="customers")
def customers_page() -> ResponseReturnValue:
    """客户: search and filter the customers, newest first, a page at a time."""
    rt = runtime()
    f = parse_filter(request.args)
    before = _int(request.args, "before")
    with rt.db.read() as session:
        page = cl.search_customers(
            f,
            session=session,
            tz=rt.settings.tz,
            display_names=rt.settings.staff,
            before=before,
        )
        choices = cl.filter_choices(session=session, display_names=rt.settings.staff)
        fresh = (
            not page.rows
            and not f.active
            and before is None
            and not cl.any_customer(session=session)
        )
    query = {k: v for k, v in request.args.items() if k != "before" and v}
    return render_template(
        "admin/customers.html",
        f=f,
        page=page,
        choices=choices,
        dimensions=_dimensions(),
        loss_states=cl.LOSS_STATES,
        query=query,
        before=before,
        fresh=fresh,
        term=term,
        export_cap=cl.EXPORT_CAP,
    )


@bp.get("/customers/export.xlsx", endpoint="customers_export")
def customers_export() -> ResponseReturnValue:
    """Export the filtered list as .xlsx (at most EXPORT_CAP rows)."""
    rt = runtime()
    f = parse_filter(request.args)
    dims = [name for name, _, _ in _dimensions()]
    with rt.db.read() as session:
        rows = cl.iter_customers(
            f, session=session, tz=rt.settings.tz, display_names=rt.settings.staff
        )
        out, _ = write_xlsx(rows, dimensions=dims, tz=rt.settings.tz)
    stamp = utcnow().astimezone(rt.settings.tz).strftime("%Y%m%d-%H%M")
    return send_file(
        out,
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        as_attachment=True,
        download_name=f"客户列表-{stamp}.xlsx",
    )


@bp.get("/customers/<external_userid>", endpoint="customer")
def customer_page(external_userid: str) -> ResponseReturnValue:
    """A customer: who, tier badges, 分层与原因, tags split, followers, 轨迹."""
    rt = runtime()
    dims = dimensions()  # parsed once per process
    with rt.db.read() as session:
        profile = customer_profile(
            external_userid, session=session, display_names=rt.settings.staff, dims=dims
        )
    if profile is None:
        abort(404, description=f"没有 external_userid 为“{external_userid[:64]}”的客户。")
    now = utcnow()
    views = explain_customer(
        rt.db,
        dims,
        customer_id=profile.id,
        tz=rt.settings.app.timezone,
        as_of=now,
        engine=rt.explain,  # one per process: its rank basis is kept for the day
    )
    reasons = readable_tiers(views, dims, now=now, tz=rt.settings.tz)
    context: dict[str, Any] = {"p": profile, "reasons": reasons, "term": term, "now": now}
    return render_template("admin/customer.html", **context)

"""Every console request: who is signed in, CSRF on changes, 只读 may change nothing."""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from typing import Any

from flask import current_app, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from bot.console import sessions
from bot.console.access import ADMIN, ROLE_LABELS, role_of
from bot.db.types import utcnow
from handlers.admin.blueprint import bp
from handlers.context import runtime
from handlers.web import cookies, csrf

log = logging.getLogger(__name__)

COOKIE = "tagbot_console"
COOKIE_PATH = "/admin"
# Reachable without a session; the login form checks its own CSRF nonce.
PUBLIC = frozenset({"admin.login", "admin.login_token", "admin.login_wecom", "admin.wecom_back"})
# State-changing requests a viewer may still make (规则试算 reads only).
VIEWER_MAY_POST = frozenset({"admin.logout", "admin.tiers_trial"})


def expiry() -> sessions.Expiry:
    """The configured idle and absolute session lifetimes."""
    console = runtime().settings.console
    return sessions.Expiry(
        idle=timedelta(minutes=console.idle_minutes),
        absolute=timedelta(hours=console.absolute_hours),
    )


def current() -> sessions.WebSession | None:
    """Return the request's live session (read once per request)."""
    if "console_session" not in g:
        g.console_session = _load()
    found: sessions.WebSession | None = g.console_session
    return found


def _load() -> sessions.WebSession | None:
    session_id = cookies.read(COOKIE, max_age=int(expiry().absolute.total_seconds()))
    if not isinstance(session_id, str):
        return None
    rt = runtime()
    now = utcnow()
    with rt.db.read() as session:
        found = sessions.current(session_id, session=session, now=now, expiry=expiry())
    if found is None:
        return None
    if found.method == "wecom":
        # [console] as it is now decides: a member taken off the lists is out at once.
        role = role_of(rt.settings.console, found.actor)
        if role is None:
            return None
        found = dataclasses.replace(found, role=role)
    if found.needs_touch(now):
        with rt.db.write() as session:
            sessions.touch(found.id_hash, session=session, now=now)
    return found


def refuse(status: int, title: str, message: str) -> tuple[str, int]:
    """Render the console's error page."""
    return render_template("admin/error.html", title=title, message=message), status


@bp.before_request
def _guard() -> ResponseReturnValue | None:
    if request.endpoint in PUBLIC:
        return None
    web = current()
    if web is None:
        if request.method in csrf.SAFE_METHODS:
            return redirect(url_for("admin.login"), code=302)
        return refuse(403, "请先登录", "登录已过期或尚未登录，请重新登录后再操作。")
    if request.method not in csrf.SAFE_METHODS:
        if not csrf.valid(web.csrf_token):
            return refuse(
                403,
                "请求缺少有效的安全令牌",
                "这个请求没有带上有效的 CSRF 令牌，已被拒绝。请刷新页面后重试。",
            )
        if web.role != ADMIN and request.endpoint not in VIEWER_MAY_POST:
            return refuse(
                403,
                "只读账号不能修改",
                "你是只读账号，只能查看，不能修改。如需修改，请联系管理员。",
            )
    return None


@bp.app_context_processor
def _template_context() -> dict[str, Any]:
    web = current() if request.blueprint == "admin" else None
    return {
        "web": web,
        "role_label": ROLE_LABELS.get(web.role, "") if web else "",
        "csrf_field": csrf.FIELD,
        "csrf_header": csrf.HEADER,
        "console_nav": NAV,
        "nav_children": NAV_CHILDREN,
        "admin_endpoints": _admin_endpoints(),
    }


# The top navigation, in the order operators read it; a page appears once its view exists.
NAV: tuple[tuple[str, str], ...] = (
    ("admin.overview", "概览"),
    ("admin.tiers", "分层"),
    ("admin.channels", "渠道活码"),
    ("admin.customers", "客户"),
    ("admin.campaigns", "触达"),
    ("admin.loss", "流失"),
    ("admin.system", "系统"),
)
# Pages below a top-level one, which keep its tab highlighted (a page module adds its own).
NAV_CHILDREN: dict[str, set[str]] = {endpoint: set() for endpoint, _ in NAV}


def _admin_endpoints() -> frozenset[str]:
    return frozenset(current_app.view_functions)


TITLES = {
    400: "请求有误",
    403: "没有权限",
    404: "页面不存在",
    405: "不支持的请求方法",
    413: "请求太大",
    429: "尝试次数过多",
}


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> ResponseReturnValue:
    status = exc.code or 500
    page, _ = refuse(status, TITLES.get(status, exc.name), exc.description or "")
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    return page, status, headers  # Retry-After stays


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> ResponseReturnValue:
    log.exception("console error")
    return refuse(500, "出错了", "服务器内部错误，详情见服务日志。")

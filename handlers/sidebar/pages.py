"""The sidebar's page shell, its signature endpoint and the customer fragment."""

from __future__ import annotations

import logging
import math
from urllib.parse import urlsplit

from flask import abort, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from bot.db.types import utcnow
from bot.errors import WeComError
from bot.sidebar.profile import SidebarView, hints_of, sidebar_view, sidebar_why
from bot.sidebar.signing import sign_page
from bot.sidebar.tickets import TicketUnavailableError
from bot.wecom.budget import interactive
from handlers.context import dimensions, runtime
from handlers.sidebar import signin
from handlers.sidebar.blueprint import bp

log = logging.getLogger(__name__)

MAX_URL = 2048
MAX_ID = 64  # external_userid is at most 64 bytes

# What the page's JS-SDK calls may run from (wecom-api.md section 7.8).
ENTRIES = ("single_chat_tools", "contact_profile")


@bp.get("/", endpoint="shell")
def shell() -> ResponseReturnValue:
    """Render the page shell (no customer data), or send a stranger through OAuth2 first."""
    web = signin.current()
    if web is None:
        return signin.authorize_redirect()
    wecom = runtime().settings.wecom
    return render_template(
        "sidebar/shell.html", corp_id=wecom.corp_id, agent_id=wecom.agent_id, entries=ENTRIES
    )


def _json_error(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response


def _page_base() -> str:
    public_url = runtime().settings.server.public_url.rstrip("/")
    return (public_url or request.host_url.rstrip("/")) + "/sidebar/"


def _same_origin() -> bool:
    """Tell whether the request's Origin (when the browser sends one) is this site."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # same-origin GET-like requests and old webviews omit it
    allowed = {request.host_url.rstrip("/")}
    public_url = runtime().settings.server.public_url
    if public_url:
        parts = urlsplit(public_url)
        allowed.add(f"{parts.scheme}://{parts.netloc}")
    return origin in allowed


@bp.post("/jssdk-sign", endpoint="jssdk_sign")
def jssdk_sign() -> ResponseReturnValue:
    """Return both JS-SDK signatures (corp and app identity) for the page URL.

    No CSRF token: the request changes nothing, the session cookie is SameSite=Lax (a
    cross-site POST carries none), a JSON body cannot be sent cross-site without a CORS
    preflight this app never grants, and the answer cannot be read by another origin.
    The Origin check and the URL prefix keep it from signing anything but this page.
    """
    if signin.current() is None:
        return _json_error(403, "登录已过期，请重新打开侧边栏。")
    if not _same_origin():
        return _json_error(403, "只接受本站页面的请求。")
    if not request.is_json:
        return _json_error(415, '请求体应为 JSON：{"url": 页面地址}。')
    body = request.get_json(silent=True)
    url = body.get("url") if isinstance(body, dict) else None
    if not isinstance(url, str) or not url:
        return _json_error(400, "缺少 url（页面地址，不含 # 之后的部分）。")
    url = url.split("#", 1)[0]
    if len(url) > MAX_URL or not url.startswith(_page_base()):
        return _json_error(400, f"只能为侧边栏页面签名（{_page_base()}…）。")
    rt = runtime()
    try:
        with interactive():  # a person waits for it
            signed = sign_page(url, db=rt.db, wecom=rt.wecom)
    except TicketUnavailableError as exc:
        # WeCom's hourly ticket limit: say so, and when to try again (the blueprint's
        # catch-all would otherwise answer this JSON request with an HTML card).
        response = _json_error(503, exc.message_zh)
        if exc.retry_after is not None:
            wait = math.ceil((exc.retry_after - utcnow()).total_seconds())
            response.headers["Retry-After"] = str(max(1, wait))
        return response
    except WeComError as exc:
        log.warning("sidebar signature: %s", exc)
        return _json_error(502, f"企业微信暂时无法提供签名，请稍后重试。（{exc.errcode}）")
    response = jsonify(
        corpId=signed.corp_id,
        agentId=signed.agent_id,
        corp={
            "timestamp": signed.corp.timestamp,
            "nonceStr": signed.corp.nonce_str,
            "signature": signed.corp.signature,
        },
        agent={
            "timestamp": signed.agent.timestamp,
            "nonceStr": signed.agent.nonce_str,
            "signature": signed.agent.signature,
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response


REFUSALS = {
    "session": ("登录已过期", "请关闭侧边栏后重新打开。"),
    "unknown": (
        "还没有这位客户的资料",
        "本系统还没有同步到这位客户（新添加的客户通常几分钟内同步）。请稍后重新打开侧边栏。",
    ),
    "not_follower": (
        "你不是该客户的跟进人",
        "只有添加了这位客户的员工才能查看 TA 的分层与建议。",
    ),
}


def _refused(key: str) -> ResponseReturnValue:
    title, message = REFUSALS[key]
    return render_template("sidebar/_card.html", key=key, title=title, message=message), 403


def _checked_id(external_userid: str) -> None:
    if len(external_userid) > MAX_ID:
        abort(400, description="external_userid 太长。")


@bp.get("/customer/<external_userid>", endpoint="customer")
def customer(external_userid: str) -> ResponseReturnValue:
    """Render the customer fragment: only for a member who follows the customer (else 403)."""
    web = signin.current()
    if web is None:
        return _refused("session")
    _checked_id(external_userid)
    settings = runtime().settings
    view = sidebar_view(
        external_userid,
        web.actor,
        db=runtime().db,
        dims=dimensions(),
        hints=hints_of(settings.tiering),
        display_names=settings.staff,
        now=utcnow(),
    )
    if not isinstance(view, SidebarView):
        return _refused(view)
    return render_template("sidebar/_customer.html", v=view)


@bp.get("/customer/<external_userid>/why", endpoint="why")
def why(external_userid: str) -> ResponseReturnValue:
    """Render 为什么 for each dimension (loaded on the first tap of a badge); 403 as above."""
    web = signin.current()
    if web is None:
        return _refused("session")
    _checked_id(external_userid)
    rt = runtime()
    now = utcnow()
    reasons = sidebar_why(
        external_userid,
        web.actor,
        db=rt.db,
        dims=dimensions(),
        tz=rt.settings.tz,
        now=now,
        engine=rt.explain,  # one per process: its rank basis is kept for the day
    )
    if isinstance(reasons, str):
        return _refused(reasons)
    return render_template("sidebar/_why.html", reasons=reasons, computed_at=now)

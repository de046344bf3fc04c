"""Signing in and out: the admin token form, WeCom's web login (扫码登录), logout."""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import urlencode

from flask import redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from bot.console import audit, sessions
from bot.console.access import ADMIN, TOKEN_ACTOR, Role, role_of
from bot.db.types import utcnow
from handlers import throttle
from handlers.admin import guard
from handlers.admin.blueprint import bp
from handlers.auth import SCOPE, token_ok
from handlers.context import runtime
from handlers.web import cookies, csrf, wecom_code
from handlers.web.wecom_code import Verdict

# Before sign-in the browser holds a signed nonce pair: the login form's CSRF token and
# the `state` the WeCom login must bring back.
PRE_COOKIE = "tagbot_console_login"
PRE_MAX_AGE = 15 * 60


def _nonces() -> dict[str, str]:
    held = cookies.read(PRE_COOKIE, max_age=PRE_MAX_AGE)
    if (
        isinstance(held, dict)
        and isinstance(held.get("csrf"), str)
        and isinstance(held.get("state"), str)
    ):
        return {"csrf": held["csrf"], "state": held["state"]}
    return {"csrf": secrets.token_urlsafe(24), "state": secrets.token_hex(16)}


def _with_nonces(response: Response, nonces: dict[str, str]) -> Response:
    cookies.write(response, PRE_COOKIE, nonces, path=guard.COOKIE_PATH, max_age=PRE_MAX_AGE)
    return response


def _login_page(
    nonces: dict[str, str], *, error: str = "", wecom_error: str = "", status: int = 200
) -> Response:
    page = render_template(
        "admin/login.html", csrf_token=nonces["csrf"], error=error, wecom_error=wecom_error
    )
    return _with_nonces(Response(page, status=status, mimetype="text/html"), nonces)


def _address() -> str:
    return throttle.client_address(runtime().settings.server)


def _sign_in(actor: str, role: Role, method: str) -> Response:
    rt = runtime()
    now = utcnow()
    with rt.db.write() as session:
        session_id, _ = sessions.create(
            session=session, actor=actor, role=role, method=method, now=now, expiry=guard.expiry()
        )
        audit.record(
            session=session,
            actor=actor,
            role=role,
            action="login",
            target=method,
            address=_address(),
            at=now,
        )
    response = redirect(url_for("admin.overview"), code=303)
    cookies.write(
        response,
        guard.COOKIE,
        session_id,
        path=guard.COOKIE_PATH,
        max_age=int(guard.expiry().absolute.total_seconds()),
    )
    cookies.clear(response, PRE_COOKIE, path=guard.COOKIE_PATH)
    return response


@bp.get("/login")
def login() -> ResponseReturnValue:
    """Show the sign-in page (or go to the console when already signed in)."""
    if guard.current() is not None:
        return redirect(url_for("admin.overview"), code=302)
    return _login_page(_nonces())


@bp.post("/login")
def login_token() -> ResponseReturnValue:
    """Sign in with the admin token; a wrong one counts in the failure throttle."""
    held = cookies.read(PRE_COOKIE, max_age=PRE_MAX_AGE)
    expected = held.get("csrf") if isinstance(held, dict) else None
    if not isinstance(expected, str) or not csrf.valid(expected):
        return guard.refuse(
            400, "登录表单已过期", "登录表单缺少有效的安全令牌（CSRF），请刷新登录页后重试。"
        )
    throttle.refuse_if_throttled(SCOPE)
    token = request.form.get("token", "")
    if not token or not token_ok(token):
        throttle.record_failure(SCOPE)
        return _login_page(_nonces(), error="管理令牌不正确。", status=401)
    return _sign_in(TOKEN_ACTOR, ADMIN, "token")


@bp.get("/login/wecom")
def login_wecom() -> ResponseReturnValue:
    """Send the browser to WeCom's web login for the self-built app (扫码登录)."""
    wecom = runtime().settings.wecom
    nonces = _nonces()
    query = urlencode(
        {
            "login_type": "CorpApp",
            "appid": wecom.corp_id,
            "agentid": wecom.agent_id,
            "redirect_uri": _callback_url(),
            "state": nonces["state"],
            "lang": "zh",
        }
    )
    return _with_nonces(redirect(f"{wecom.web_login_url}?{query}", code=302), nonces)


def _callback_url() -> str:
    public_url = runtime().settings.server.public_url.rstrip("/")
    path = url_for("admin.wecom_back")
    return public_url + path if public_url else url_for("admin.wecom_back", _external=True)


@bp.get("/login/wecom/callback")
def wecom_back() -> ResponseReturnValue:
    """Take WeCom's code back: check the state, ask WeCom who it is, apply [console]."""
    held = cookies.read(PRE_COOKIE, max_age=PRE_MAX_AGE)
    expected = held.get("state") if isinstance(held, dict) else None
    state = request.args.get("state", "")
    if not isinstance(expected, str) or not hmac.compare_digest(state.encode(), expected.encode()):
        return guard.refuse(
            400,
            "登录请求已失效",
            "这次扫码登录不是从本页面发起的，或已超过 15 分钟。请回到登录页重新扫码。",
        )
    code = request.args.get("code", "")
    if not code:
        return guard.refuse(
            400, "未完成登录", "企业微信没有返回登录码（可能取消了登录）。请回到登录页重新扫码。"
        )
    owner = wecom_code.who_is(code, scope=SCOPE)
    if owner.verdict is Verdict.INVALID:
        # Back to the login page: a person scans again (a code cannot be fetched silently).
        return _login_page(
            _nonces(),
            wecom_error="登录码无效或已过期（每个码只能用一次，5 分钟内有效）。请重新扫码登录。",
            status=400,
        )
    if owner.verdict is Verdict.UNAVAILABLE:
        return guard.refuse(
            502, "企业微信暂时无法确认身份", wecom_code.unavailable_message(owner.errcode)
        )
    if owner.verdict is Verdict.OUTSIDER:
        return _refused("", "非企业成员不能登录运营后台。")
    rt = runtime()
    role = role_of(rt.settings.console, owner.userid)
    if role is None:
        return _refused(
            owner.userid,
            f"你的企业微信账号（{owner.userid}）没有运营后台的权限。"
            "请管理员在 config.toml 的 [console] admins 或 viewers 中加入你的账号。",
        )
    return _sign_in(owner.userid, role, "wecom")


def _refused(actor: str, message: str) -> ResponseReturnValue:
    with runtime().db.write() as session:
        audit.record(
            session=session,
            actor=actor or "(非企业成员)",
            role="",
            action="login_refused",
            target="wecom",
            address=_address(),
        )
    return guard.refuse(403, "没有后台权限", message)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End the session everywhere and go back to the sign-in page."""
    web = guard.current()
    assert web is not None  # the guard let a signed-in request through
    details: dict[str, Any] = {"method": web.method}
    with runtime().db.write() as session:
        sessions.end(web.id_hash, session=session)
        audit.record(
            session=session,
            actor=web.actor,
            role=web.role,
            action="logout",
            before=details,
            address=_address(),
        )
    response = redirect(url_for("admin.login"), code=303)
    cookies.clear(response, guard.COOKIE, path=guard.COOKIE_PATH)
    return response

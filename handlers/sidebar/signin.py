"""Who is looking: OAuth2 snsapi_base inside the WeCom client, kept in a server-side session.

`GET /sidebar/` without a session goes to WeCom's authorize URL with a `state` bound to a
short-lived signed cookie; `/sidebar/oauth` checks that state, asks `auth/getuserinfo`
who the code belongs to, and starts a sidebar session (bot.console.sessions, kind
sidebar) whose id travels in a signed cookie limited to /sidebar. The webview loses JS
storage, not cookies (wecom-api.md section 7.9).
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from urllib.parse import urlencode

from flask import g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from bot.console import sessions
from bot.console.access import VIEWER
from bot.db.types import utcnow
from handlers.context import runtime
from handlers.sidebar.blueprint import bp
from handlers.web import cookies, wecom_code
from handlers.web.wecom_code import Verdict

COOKIE = "tagbot_sidebar"
PRE_COOKIE = "tagbot_sidebar_login"
COOKIE_PATH = "/sidebar"
PRE_MAX_AGE = 10 * 60  # an OAuth round trip takes seconds; a code lives 5 minutes
# Failed codes count apart from the admin token's: staff behind one office address must
# not lock the operators out of /api and the console, nor the reverse.
THROTTLE_SCOPE = "sidebar"
# A reused or expired code sends the browser through sign-in again, once: a second failure
# in a row shows a card instead of looping (a wrong 可信域名 fails every time).
RETRIES = 1
KEEP_STATES = 3  # states held at once, the new one included


def expiry() -> sessions.Expiry:
    """The sidebar session's lifetime (no idle expiry: the client keeps the cookie)."""
    hours = timedelta(hours=runtime().settings.sidebar.session_hours)
    return sessions.Expiry(idle=hours, absolute=hours)


def current() -> sessions.WebSession | None:
    """Return the request's live sidebar session (read once per request)."""
    if "sidebar_session" not in g:
        g.sidebar_session = _load()
    found: sessions.WebSession | None = g.sidebar_session
    return found


def _load() -> sessions.WebSession | None:
    lifetime = expiry()
    session_id = cookies.read(COOKIE, max_age=int(lifetime.absolute.total_seconds()))
    if not isinstance(session_id, str):
        return None
    with runtime().db.read() as session:
        return sessions.current(
            session_id, session=session, now=utcnow(), expiry=lifetime, kind=sessions.SIDEBAR
        )


def card(status: int, key: str, title: str, message: str, *, retry: bool = False) -> Response:
    """Render a full-page card (sign-in problems): friendly words, no data."""
    page = render_template(
        "sidebar/card_page.html", key=key, title=title, message=message, retry=retry
    )
    return Response(page, status=status, mimetype="text/html")


def _callback_url() -> str:
    public_url = runtime().settings.server.public_url.rstrip("/")
    path = url_for("sidebar.oauth")
    return public_url + path if public_url else url_for("sidebar.oauth", _external=True)


def authorize_redirect(tries: int = 0) -> Response:
    """Send the browser to WeCom's OAuth2 authorize URL with a fresh state bound to a cookie."""
    wecom = runtime().settings.wecom
    state = secrets.token_hex(16)  # [a-zA-Z0-9], at most 128 bytes (section 7.3)
    query = urlencode(
        {
            "appid": wecom.corp_id,
            "redirect_uri": _callback_url(),
            "response_type": "code",
            "scope": "snsapi_base",
            "state": state,
            "agentid": wecom.agent_id,
        }
    )
    response = redirect(f"{wecom.oauth_url}?{query}#wechat_redirect", code=302)
    # The states of the sign-ins still under way (a client opening the page twice at once
    # must not make the first one stale): the new one and the newest before it, oldest first.
    states = [*_pending(), state][-KEEP_STATES:]
    held = {"states": states, "tries": tries}
    cookies.write(response, PRE_COOKIE, held, path=COOKIE_PATH, max_age=PRE_MAX_AGE)
    return response


def _pending() -> list[str]:
    held = cookies.read(PRE_COOKIE, max_age=PRE_MAX_AGE)
    states = held.get("states") if isinstance(held, dict) else None
    if not isinstance(states, list):
        return []
    return [s for s in states if isinstance(s, str)]


def _state_ok(state: str) -> bool:
    return any(hmac.compare_digest(state.encode(), s.encode()) for s in _pending())


@bp.get("/oauth", endpoint="oauth")
def oauth() -> ResponseReturnValue:
    """Take WeCom's code back: check the state, ask who it is, start the member's session."""
    held = cookies.read(PRE_COOKIE, max_age=PRE_MAX_AGE)
    tries = held.get("tries", 0) if isinstance(held, dict) else 0
    if not _state_ok(request.args.get("state", "")):
        if current() is not None:  # a reloaded callback URL after signing in
            return redirect(url_for("sidebar.shell"), code=302)
        return card(
            400,
            "stale",
            "登录已失效",
            "这次登录不是从本页面发起的，或已超过 10 分钟。请重新打开侧边栏。",
            retry=True,
        )
    owner = wecom_code.who_is(request.args.get("code", ""), scope=THROTTLE_SCOPE)
    if owner.verdict is Verdict.INVALID:
        if isinstance(tries, int) and tries < RETRIES:
            return authorize_redirect(tries + 1)  # a fresh code, silently
        return card(
            400,
            "code",
            "登录没有完成",
            "企业微信给出的登录码无效或已过期。请关闭侧边栏后重新打开；"
            "如果一直这样，请管理员检查应用的可信域名是否与 public_url 一致。",
            retry=True,
        )
    if owner.verdict is Verdict.UNAVAILABLE:
        return card(
            502,
            "wecom",
            "企业微信暂时无法确认身份",
            wecom_code.unavailable_message(owner.errcode),
            retry=True,
        )
    if owner.verdict is Verdict.OUTSIDER:
        return card(
            403,
            "outsider",
            "仅限企业成员使用",
            "这个页面只对本企业的成员开放，请在企业微信中用成员账号打开。",
        )
    rt = runtime()
    with rt.db.write() as session:
        session_id, _ = sessions.create(
            session=session,
            actor=owner.userid,
            role=VIEWER,
            method=sessions.SIDEBAR_METHOD,
            now=utcnow(),
            expiry=expiry(),
        )
    response = redirect(url_for("sidebar.shell"), code=302)
    lifetime = int(expiry().absolute.total_seconds())
    cookies.write(response, COOKIE, session_id, path=COOKIE_PATH, max_age=lifetime)
    cookies.clear(response, PRE_COOKIE, path=COOKIE_PATH)
    return response

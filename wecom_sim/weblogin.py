"""WeCom's web login page for a self-built app (wecom-api.md section 7.4), as a page to click.

`GET /wwlogin/sso/login?login_type=CorpApp&appid=…&agentid=…&redirect_uri=…&state=…` shows
the corp's members; choosing one stands for that member scanning the QR code, and the
browser is sent to `redirect_uri?code=…&state=…` as WeCom does. 拒绝 sends back only the
state, and 非企业成员 a code that `auth/getuserinfo` answers with an openid.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from flask import Blueprint, Response, redirect, request
from werkzeug.wrappers import Response as BaseResponse

if TYPE_CHECKING:
    from wecom_sim.server import Simulator

PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>企业微信登录（模拟器）</title></head>
<body><h1>企业微信登录（模拟器）</h1>
<p>真实的企业微信在这里显示二维码；在模拟器中，选择扫码的成员：</p>
<ul id="members">{members}</ul>
<p><a id="outsider" href="{outsider}">非企业成员扫码</a> · <a id="refuse" href="{refuse}">拒绝登录</a></p>
</body></html>"""


def error_page(message: str) -> Response:
    """Answer a request with bad parameters as WeCom's pages do: a short page, 400."""
    body = (
        f"<!doctype html><meta charset='utf-8'><h1>登录参数错误</h1><p>{html.escape(message)}</p>"
    )
    return Response(body, status=400, mimetype="text/html")


def member_links(sim: Simulator, action: str, label: str = "") -> str:
    """The active members as `<li>` links to `action` (this page's query plus `userid`)."""
    with sim.state.lock:
        members = [(m.userid, m.name) for m in sim.state.staff.values() if m.active]
    return "".join(
        f'<li><a data-userid="{html.escape(userid)}" href="{query_link(action, userid=userid)}">'
        f"{html.escape(name)}（{html.escape(userid)}）{label}</a></li>"
        for userid, name in members
    )


def query_link(action: str, **extra: str) -> str:
    """`action` with this request's query and `extra`, escaped for an attribute."""
    return html.escape(action + "?" + urlencode({**request.args, **extra}))


def weblogin_blueprint(sim: Simulator) -> Blueprint:
    """Return the blueprint of the fake web login bound to `sim`."""
    bp = Blueprint("weblogin", __name__, url_prefix="/wwlogin/sso")

    def checked() -> tuple[str, str] | Response:
        args = request.args
        if args.get("login_type") != "CorpApp":
            return error_page("login_type must be CorpApp for a self-built app")
        if args.get("appid") != sim.corp_id:
            return error_page("appid is not this corp's id")
        if args.get("agentid") != str(sim.agent_id):
            return error_page("agentid is not this app's id")
        redirect_uri = args.get("redirect_uri", "")
        if not redirect_uri.startswith(("http://", "https://")):
            return error_page("redirect_uri must be an http(s) URL")
        return redirect_uri, args.get("state", "")

    @bp.get("/login")
    def login() -> Response:
        found = checked()
        if isinstance(found, Response):
            return found
        page = PAGE.format(
            members=member_links(sim, "scan", "扫码"),
            outsider=query_link("scan", outsider="1"),
            refuse=query_link("scan", refuse="1"),
        )
        return Response(page, mimetype="text/html")

    @bp.get("/scan")
    def scan() -> BaseResponse:
        found = checked()
        if isinstance(found, Response):
            return found
        redirect_uri, state = found
        args = request.args
        if args.get("refuse"):
            back = {"state": state}
        else:
            userid = "" if args.get("outsider") else args.get("userid", "")
            if not args.get("outsider"):
                with sim.state.lock:
                    member = sim.state.staff.get(userid)
                if member is None or not member.active:
                    return error_page(f"no active member {userid!r}")
            back = {"code": sim.login_code(userid), "state": state}
        joiner = "&" if "?" in redirect_uri else "?"
        return redirect(redirect_uri + joiner + urlencode(back), code=302)

    return bp

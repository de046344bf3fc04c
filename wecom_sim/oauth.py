"""WeCom's OAuth2 authorize redirect inside the client (wecom-api.md section 7.3).

`GET /connect/oauth2/authorize?appid=…&redirect_uri=…&response_type=code&scope=snsapi_base
&state=…&agentid=…` (the `#wechat_redirect` suffix stays in the browser) stands for the
WeCom client loading a page of the app: it sends the browser straight on to
`redirect_uri?code=…&state=…` for the member signed in to the simulated client, whom the
control API picks (`PUT /control/oauth_member`, else the member of `POST /control/open_chat`). With nobody picked it shows the members to
click, like the web login page. An outsider (`{"outsider": true}`) gets a code that
`auth/getuserinfo` answers with an openid.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from flask import Blueprint, Response, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from wecom_sim.weblogin import error_page, member_links, query_link

if TYPE_CHECKING:
    from wecom_sim.server import Simulator

SCOPES = ("snsapi_base", "snsapi_privateinfo")
_STATE_RE = re.compile(r"^[A-Za-z0-9]{0,128}$")

PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>企业微信网页授权（模拟器）</title></head>
<body><h1>企业微信网页授权（模拟器）</h1>
<p>真实的企业微信客户端在这里静默授权当前登录的成员；模拟器中还没有指定成员
（PUT /control/oauth_member），请选择打开页面的成员：</p>
<ul id="members">{members}</ul>
<p><a id="outsider" href="{outsider}">非企业成员打开</a></p>
</body></html>"""


def oauth_blueprint(sim: Simulator) -> Blueprint:
    """Return the blueprint of the fake OAuth2 authorize redirect bound to `sim`."""
    bp = Blueprint("oauth", __name__, url_prefix="/connect/oauth2")

    def checked() -> tuple[str, str] | Response:
        args = request.args
        if args.get("appid") != sim.corp_id:
            return error_page("appid is not this corp's id")
        if args.get("response_type") != "code":
            return error_page("response_type must be code")
        if args.get("scope") not in SCOPES:
            return error_page(f"scope must be one of {', '.join(SCOPES)}")
        agentid = args.get("agentid")
        if agentid is not None and agentid != str(sim.agent_id):
            return error_page("agentid is not this app's id")
        if args.get("scope") == "snsapi_privateinfo" and agentid is None:
            return error_page("snsapi_privateinfo needs agentid")
        state = args.get("state", "")
        if not _STATE_RE.match(state):
            return error_page("state must be at most 128 letters or digits")
        redirect_uri = args.get("redirect_uri", "")
        if not redirect_uri.startswith(("http://", "https://")):
            return error_page("redirect_uri must be an http(s) URL")
        return redirect_uri, state

    def back(redirect_uri: str, state: str, userid: str) -> BaseResponse:
        joiner = "&" if "?" in redirect_uri else "?"
        query = urlencode({"code": sim.login_code(userid), "state": state})
        return redirect(redirect_uri + joiner + query, code=302)

    @bp.get("/authorize")
    def authorize() -> BaseResponse:
        found = checked()
        if isinstance(found, Response):
            return found
        redirect_uri, state = found
        picked = sim.oauth_member
        if picked is not None:
            return back(redirect_uri, state, picked)
        page = PAGE.format(
            members=member_links(sim, "pick"), outsider=query_link("pick", outsider="1")
        )
        return Response(page, mimetype="text/html")

    @bp.get("/pick")
    def pick() -> BaseResponse:
        found = checked()
        if isinstance(found, Response):
            return found
        redirect_uri, state = found
        userid = "" if request.args.get("outsider") else request.args.get("userid", "")
        if userid and not sim.is_active_member(userid):
            return error_page(f"no active member {userid!r}")
        return back(redirect_uri, state, userid)

    return bp

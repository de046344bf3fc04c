"""auth/getuserinfo: https://developer.work.weixin.qq.com/document/path/91023 (section 7.3)."""

from __future__ import annotations

from typing import Any

from wecom_sim.api.params import Call
from wecom_sim.api.registry import route
from wecom_sim.state import ApiError, SimState

INVALID_CODE = 40029


@route("auth/getuserinfo", "GET")
def getuserinfo(state: SimState, call: Call) -> dict[str, Any]:
    """Answer the member's userid for a valid code once; a reused or expired code is 40029."""
    code = call.text("code", required=True)
    login = state.login_codes.pop(code, None)  # single use, whether or not it expired
    if login is None or state.now() >= login.expires_at:
        raise ApiError(INVALID_CODE, "invalid code")
    if login.userid:
        return {"userid": login.userid}
    return {"openid": login.openid}

"""gettoken: https://developer.work.weixin.qq.com/document/path/91039."""

from __future__ import annotations

import math
from typing import Any

from wecom_sim.api.params import Call
from wecom_sim.api.registry import route
from wecom_sim.crypto import random_id
from wecom_sim.state import ApiError, SimState

INVALID_CREDENTIAL = 40001
MISSING_CORPID = 41002
MISSING_SECRET = 41004


@route("gettoken", "GET", needs_token=False)
def gettoken(state: SimState, call: Call) -> dict[str, Any]:
    """Return the app's access token; the same one until it expires, as WeCom does."""
    corpid = call.text("corpid", required=True, missing=MISSING_CORPID)
    secret = call.text("corpsecret", required=True, missing=MISSING_SECRET)
    if corpid != state.corp_id or secret != state.secret:
        raise ApiError(INVALID_CREDENTIAL, "invalid credential: corpid or corpsecret")
    now = state.now()
    token = state.current_token
    if token is None or state.tokens.get(token, 0.0) <= now:
        token = random_id("", 96)
        state.tokens[token] = now + state.token_ttl
        state.current_token = token
    return {"access_token": token, "expires_in": math.ceil(state.tokens[token] - now)}

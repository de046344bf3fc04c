"""联系我 APIs: add/get/update/del/list_contact_way.

See https://developer.work.weixin.qq.com/document/path/92228 (96311/96348).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from wecom_sim.api.params import INVALID, Call, check_length, offset_page
from wecom_sim.api.registry import route
from wecom_sim.crypto import random_id
from wecom_sim.models import ContactWay
from wecom_sim.state import ApiError, SimState

# The doc names the 41037–41045 range (type, scene, style, config_id, user count, cap);
# this is the order the simulator assigns within it.
MISSING_TYPE = 41037
INVALID_TYPE = 41038
MISSING_SCENE = 41039
INVALID_SCENE = 41040
TOO_MANY_USERS = 41041
INVALID_STYLE = 41042
MISSING_CONFIG_ID = 41043
INVALID_CONFIG_ID = 41044
UNKNOWN_USER = 60111
USER_NOT_ACTIVE = 41054
MAX_USERS = 100
MAX_TEMP_SECONDS = 14 * 86400
DEFAULT_LIST_SPAN = 90 * 86400


def _check_users(state: SimState, users: list[str]) -> None:
    if len(users) > MAX_USERS:
        raise ApiError(TOO_MANY_USERS, f"more than {MAX_USERS} users")
    for userid in users:
        member = state.staff.get(userid)
        if member is None:
            raise ApiError(UNKNOWN_USER, f"userid not found: {userid}")
        if not member.active:
            raise ApiError(USER_NOT_ACTIVE, f"user not active: {userid}")


def _apply(state: SimState, way: ContactWay, call: Call) -> None:
    """Validate the optional fields present in the call, then copy them onto `way`."""
    style = call.integer("style", way.style)
    if style < 1:
        raise ApiError(INVALID_STYLE, "invalid style")
    remark = call.text("remark") if "remark" in call.body else way.remark
    check_length("remark", remark, 30)
    state_text = call.text("state") if "state" in call.body else way.state
    check_length("state", state_text, 30)
    users = call.strings("user") if "user" in call.body else way.user
    party = call.body.get("party", way.party)
    if not isinstance(party, list) or not all(isinstance(p, int) for p in party):
        raise ApiError(INVALID, "invalid parameter: party must be a list of ids")
    _check_users(state, users)
    if way.type == 1 and (len(users) != 1 or party):
        raise ApiError(INVALID, "type 1 (single) needs exactly one user and no party")
    if way.type == 2 and not users and not party:
        raise ApiError(INVALID, "type 2 (multi) needs user or party")
    is_temp = call.boolean("is_temp", way.is_temp)
    if is_temp and way.type != 1:
        raise ApiError(INVALID, "is_temp needs type 1")
    expires_in = call.integer("expires_in", way.expires_in or 7 * 86400)
    chat_expires_in = call.integer("chat_expires_in", way.chat_expires_in or 86400)
    if is_temp and not (
        0 < expires_in <= MAX_TEMP_SECONDS and 0 < chat_expires_in <= MAX_TEMP_SECONDS
    ):
        raise ApiError(INVALID, "expires_in and chat_expires_in must be within 14 days")
    conclusions = call.body.get("conclusions", way.conclusions)
    if not isinstance(conclusions, dict):
        raise ApiError(INVALID, "invalid parameter: conclusions")
    way.style = style
    way.remark = remark
    way.state = state_text
    way.user = list(users)
    way.party = list(party)
    way.skip_verify = call.boolean("skip_verify", way.skip_verify)
    way.is_temp = is_temp
    way.expires_in = expires_in if is_temp else 0
    way.chat_expires_in = chat_expires_in if is_temp else 0
    way.unionid = call.text("unionid") if "unionid" in call.body else way.unionid
    way.is_exclusive = call.boolean("is_exclusive", way.is_exclusive)
    way.conclusions = conclusions


def _existing(state: SimState, call: Call) -> ContactWay:
    config_id = call.text("config_id", required=True, missing=MISSING_CONFIG_ID)
    way = state.contact_ways.get(config_id)
    if way is None:
        raise ApiError(INVALID_CONFIG_ID, f"invalid config_id: {config_id}")
    return way


@route("externalcontact/add_contact_way", "POST")
def add_contact_way(state: SimState, call: Call) -> dict[str, Any]:
    """Create a live code; scene 2 also gets a QR code URL."""
    kind = call.integer("type", missing=MISSING_TYPE)
    if kind not in (1, 2):
        raise ApiError(INVALID_TYPE, "invalid type")
    scene = call.integer("scene", missing=MISSING_SCENE)
    if scene not in (1, 2):
        raise ApiError(INVALID_SCENE, "invalid scene")
    config_id = random_id("", 32, "0123456789abcdef")
    way = ContactWay(config_id=config_id, type=kind, scene=scene, created_at=state.now_int())
    _apply(state, way, call)
    if scene == 2:
        way.qr_code = f"{state.public_url}/qr/{config_id}.png"
    state.contact_ways[config_id] = way
    answer: dict[str, Any] = {"config_id": config_id}
    if way.qr_code:
        answer["qr_code"] = way.qr_code
    return answer


@route("externalcontact/get_contact_way", "POST")
def get_contact_way(state: SimState, call: Call) -> dict[str, Any]:
    """Return one live code's configuration."""
    return {"contact_way": _existing(state, call).to_api()}


@route("externalcontact/update_contact_way", "POST")
def update_contact_way(state: SimState, call: Call) -> dict[str, Any]:
    """Overwrite the fields given in the call; all others keep their values."""
    way = _existing(state, call)
    draft = replace(way, user=list(way.user), party=list(way.party))
    _apply(state, draft, call)  # on a refusal the stored live code stays untouched
    state.contact_ways[way.config_id] = draft
    return {}


@route("externalcontact/del_contact_way", "POST")
def del_contact_way(state: SimState, call: Call) -> dict[str, Any]:
    """Delete a live code."""
    way = _existing(state, call)
    del state.contact_ways[way.config_id]
    return {}


@route("externalcontact/list_contact_way", "POST")
def list_contact_way(state: SimState, call: Call) -> dict[str, Any]:
    """Return the config_ids of live codes created in a time range, paged."""
    now = state.now_int()
    start = call.integer("start_time", now - DEFAULT_LIST_SPAN)
    end = call.integer("end_time", now)
    if start > end:
        raise ApiError(INVALID, "start_time after end_time")
    limit = call.limit(100, 1000)
    ways = [w for w in state.contact_ways.values() if start <= w.created_at <= end]
    page, next_cursor = offset_page(ways, call.text("cursor"), limit)
    return {"contact_way": [{"config_id": w.config_id} for w in page], "next_cursor": next_cursor}

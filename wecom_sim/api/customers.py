"""Customer APIs: externalcontact/get, list, batch/get_by_user, get_follow_user_list, remark.

See https://developer.work.weixin.qq.com/document/path/92114 and 92994. Optional fields are
left out when empty, as WeCom does: `unionid` (only when the corp bound a WeChat developer
account), `remark_corp_name`, `remark_mobiles`, `state`, and externalcontact/get's `tags`.
"""

from __future__ import annotations

from typing import Any

from wecom_sim.api.params import (
    BAD_CURSOR,
    INVALID,
    Call,
    check_length,
    decode_cursor,
    encode_cursor,
)
from wecom_sim.api.registry import route
from wecom_sim.models import Customer, Relation
from wecom_sim.state import ApiError, SimState

UNKNOWN_USER = 60111
UNKNOWN_CUSTOMER = 40096
NO_RELATION = 84061
FOLLOWERS_PER_PAGE = 500


def known_staff(state: SimState, userid: str) -> None:
    """Refuse a userid the corp does not have."""
    if userid not in state.staff:
        raise ApiError(UNKNOWN_USER, f"userid not found: {userid}")


def known_customer(state: SimState, external_userid: str) -> Customer:
    """Return the customer or refuse the external_userid."""
    customer = state.customers.get(external_userid)
    if customer is None:
        raise ApiError(UNKNOWN_CUSTOMER, f"invalid external userid: {external_userid}")
    return customer


def existing_relation(state: SimState, userid: str, external_userid: str) -> Relation:
    """Return the relation between a member and a customer, refusing unknown ids."""
    known_staff(state, userid)
    known_customer(state, external_userid)
    relation = state.relation(userid, external_userid)
    if relation is None:
        raise ApiError(NO_RELATION, "not external contact of the user")
    return relation


def contact_json(state: SimState, customer: Customer) -> dict[str, Any]:
    """Return the external_contact object; unionid only when the corp bound a developer id."""
    data: dict[str, Any] = {
        "external_userid": customer.external_userid,
        "name": customer.name,
        "avatar": customer.avatar,
        "type": customer.type,
        "gender": customer.gender,
    }
    if state.unionid_bound and customer.unionid:
        data["unionid"] = customer.unionid
    if customer.type == 2:  # position and corp names exist only for WeCom users
        data.update(
            position=customer.position,
            corp_name=customer.corp_name,
            corp_full_name=customer.corp_full_name,
        )
    return data


def _relation_common(relation: Relation) -> dict[str, Any]:
    data: dict[str, Any] = {
        "userid": relation.userid,
        "remark": relation.remark,
        "description": relation.description,
        "createtime": relation.createtime,
        "oper_userid": relation.oper_userid or relation.userid,
        "add_way": relation.add_way,
    }
    # WeCom leaves these out when empty
    if relation.remark_corp_name:
        data["remark_corp_name"] = relation.remark_corp_name
    if relation.remark_mobiles:
        data["remark_mobiles"] = list(relation.remark_mobiles)
    if relation.state:
        data["state"] = relation.state
    return data


def follow_user_json(state: SimState, relation: Relation) -> dict[str, Any]:
    """Return one follow_user entry of externalcontact/get, with tag names.

    Corp tags are type 1, personal tags type 2 (no tag_id: "用户自定义类型标签（type=2）不返回"),
    rule-group tags type 3 (doc 92114).
    """
    data = _relation_common(relation)
    tags: list[dict[str, Any]] = []
    for tag_id in relation.tag_ids:
        tag = state.tags[tag_id]
        group = state.groups[tag.group_id]
        tags.append({"group_name": group.name, "tag_name": tag.name, "type": 1, "tag_id": tag_id})
    for group_name, tag_name in relation.personal_tags:
        tags.append({"group_name": group_name, "tag_name": tag_name, "type": 2})
    for tag_id in relation.rule_tag_ids:
        rule = state.rule_tags[tag_id]
        tags.append(
            {"group_name": rule.group_name, "tag_name": rule.name, "type": 3, "tag_id": tag_id}
        )
    if tags:
        data["tags"] = tags
    return data


def follow_info_json(relation: Relation) -> dict[str, Any]:
    """Return the follow_info object of batch/get_by_user: corp and rule-group tag ids only."""
    data = _relation_common(relation)
    data["tag_id"] = relation.tag_ids + relation.rule_tag_ids  # personal tags have no id
    return data


@route("externalcontact/get", "GET")
def get_customer(state: SimState, call: Call) -> dict[str, Any]:
    """Return one customer and the members following it, 500 followers per page."""
    external_userid = call.text("external_userid", required=True)
    customer = known_customer(state, external_userid)
    followers = sorted(state.by_customer.get(external_userid, {}).values(), key=_follow_order)
    if not followers:
        raise ApiError(NO_RELATION, "not external contact of any member")
    start = decode_cursor(call.text("cursor")).get("o", 0)
    if not isinstance(start, int) or start < 0:
        raise ApiError(BAD_CURSOR, "invalid cursor")
    page = followers[start : start + FOLLOWERS_PER_PAGE]
    answer: dict[str, Any] = {
        "external_contact": contact_json(state, customer),
        "follow_user": [follow_user_json(state, r) for r in page],
    }
    if start + FOLLOWERS_PER_PAGE < len(followers):
        answer["next_cursor"] = encode_cursor({"o": start + FOLLOWERS_PER_PAGE})
    return answer


def _follow_order(relation: Relation) -> tuple[int, str]:
    return relation.createtime, relation.userid


@route("externalcontact/list", "GET")
def list_customers(state: SimState, call: Call) -> dict[str, Any]:
    """Return the external_userids of one member's customers."""
    userid = call.text("userid", required=True)
    known_staff(state, userid)
    return {"external_userid": list(state.by_user.get(userid, {}))}


@route("externalcontact/batch/get_by_user", "POST")
def batch_get_by_user(state: SimState, call: Call) -> dict[str, Any]:
    """Return the customers of up to 100 members, paged in a stable order by opaque cursor."""
    userids = call.strings("userid_list")
    if not userids and call.text("userid"):
        userids = [call.text("userid")]  # the deprecated single-user form, body only
    if not userids:
        raise ApiError(INVALID, "userid_list must not be empty")
    if len(userids) > 100:
        raise ApiError(INVALID, "userid_list holds more than 100 userids")
    for userid in userids:
        known_staff(state, userid)
    limit = call.limit(50, 100)
    position = decode_cursor(call.text("cursor"))
    user_index = position.get("u", 0)
    after = position.get("x", "")
    if not isinstance(user_index, int) or not isinstance(after, str) or user_index < 0:
        raise ApiError(BAD_CURSOR, "invalid cursor")
    items: list[dict[str, Any]] = []
    next_cursor = ""
    for index in range(user_index, len(userids)):
        relations = state.by_user.get(userids[index], {})
        # keyed, not offset, positions: a deleted relation can't make a page skip another
        keys = sorted(k for k in relations if index > user_index or k > after)
        for key in keys:
            if len(items) == limit:
                last = items[-1]
                next_cursor = encode_cursor({"u": last["_user"], "x": last["_key"]})
                break
            item = {
                "external_contact": contact_json(state, state.customers[key]),
                "follow_info": follow_info_json(relations[key]),
                "_user": index,
                "_key": key,
            }
            items.append(item)
        if next_cursor:
            break
    for item in items:
        del item["_user"], item["_key"]
    return {"external_contact_list": items, "next_cursor": next_cursor}


@route("externalcontact/get_follow_user_list", "GET")
def get_follow_user_list(state: SimState, call: Call) -> dict[str, Any]:
    """Return the active members who have 客户联系."""
    return {"follow_user": [s.userid for s in state.staff.values() if s.active]}


@route("externalcontact/remark", "POST")
def remark(state: SimState, call: Call) -> dict[str, Any]:
    """Change the member's remark fields for a customer; no callback follows."""
    relation = existing_relation(
        state, call.text("userid", required=True), call.text("external_userid", required=True)
    )
    for name, limit in (("remark", 20), ("description", 150), ("remark_company", 20)):
        check_length(name, call.text(name), limit)
    if "remark" in call.body:
        relation.remark = call.text("remark")
    if "description" in call.body:
        relation.description = call.text("description")
    if "remark_company" in call.body:
        relation.remark_corp_name = call.text("remark_company")
    if "remark_mobiles" in call.body:
        relation.remark_mobiles = call.strings("remark_mobiles")
    return {}

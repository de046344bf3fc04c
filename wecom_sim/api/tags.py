"""Corp tag APIs: get/add/edit/del_corp_tag and mark_tag.

See https://developer.work.weixin.qq.com/document/path/92117 and 92118.
"""

from __future__ import annotations

from typing import Any

from wecom_sim.api.customers import existing_relation
from wecom_sim.api.params import INVALID, MISSING, Call, check_length
from wecom_sim.api.registry import route
from wecom_sim.models import Tag, TagGroup
from wecom_sim.state import ApiError, SimState

INVALID_TAG = 40068
NAME_EXISTS = 40071
# Apps may edit or delete only the tags they created; WeCom's 60011 ("指定的成员/部门/标签参数
# 无权限", e.g. a tag the app did not create) is the refusal the simulator gives.
NOT_CREATED_BY_APP = 60011
NAME_LIMIT = 30
ORDER_LIMIT = 2**32


def _tag_json(tag: Tag, *, with_deleted: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": tag.tag_id,
        "name": tag.name,
        "create_time": tag.create_time,
        "order": tag.order,
    }
    if with_deleted:
        data["deleted"] = tag.deleted
    return data


def _group_json(group: TagGroup, tags: list[Tag], *, with_deleted: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "group_id": group.group_id,
        "group_name": group.name,
        "create_time": group.create_time,
        "order": group.order,
    }
    if with_deleted:
        data["deleted"] = group.deleted
    # larger order sorts first; ties keep creation order
    ordered = sorted(tags, key=lambda t: -t.order)
    data["tag"] = [_tag_json(t, with_deleted=with_deleted) for t in ordered]
    return data


@route("externalcontact/get_corp_tag_list", "POST")
def get_corp_tag_list(state: SimState, call: Call) -> dict[str, Any]:
    """Return the tag library; group_id filter wins over tag_id; deleted shown only if filtering."""
    tag_ids = call.strings("tag_id")
    group_ids = call.strings("group_id")
    groups: list[dict[str, Any]] = []
    if group_ids:
        for group_id in dict.fromkeys(group_ids):
            group = state.groups.get(group_id)
            if group is not None:
                tags = [state.tags[t] for t in group.tag_ids]
                groups.append(_group_json(group, tags, with_deleted=True))
    elif tag_ids:
        wanted: dict[str, list[Tag]] = {}
        for tag_id in dict.fromkeys(tag_ids):
            tag = state.tags.get(tag_id)
            if tag is not None:
                wanted.setdefault(tag.group_id, []).append(tag)
        for group_id, tags in wanted.items():
            groups.append(_group_json(state.groups[group_id], tags, with_deleted=True))
    else:
        for group in state.groups.values():
            if not group.deleted:
                tags = [state.tags[t] for t in group.tag_ids if not state.tags[t].deleted]
                groups.append(_group_json(group, tags, with_deleted=False))
    groups.sort(key=lambda g: -g["order"])
    return {"tag_group": groups}


def _order(value: Any, name: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < ORDER_LIMIT:
        raise ApiError(INVALID, f"invalid parameter: {name} must be in [0, 2^32)")
    return value


def _name(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApiError(MISSING, f"missing parameter: {name}")
    check_length(name, value, NAME_LIMIT)
    return value


@route("externalcontact/add_corp_tag", "POST")
def add_corp_tag(state: SimState, call: Call) -> dict[str, Any]:
    """Add tags to a group (by id or name, creating the group); duplicate names collapse."""
    requested = call.objects("tag")
    if not requested:
        raise ApiError(INVALID, "tag must not be empty: WeCom keeps no empty groups")
    names = [_name(t.get("name"), "tag.name") for t in requested]
    orders = [_order(t.get("order"), "tag.order") for t in requested]
    group_order = _order(call.body.get("order"), "order")
    group_id = call.text("group_id")
    group: TagGroup | None
    if group_id:
        group = state.groups.get(group_id)
        if group is None or group.deleted:
            raise ApiError(INVALID_TAG, f"invalid group id: {group_id}")
    else:
        group_name = _name(call.body.get("group_name"), "group_name")
        group = state.live_group_by_name(group_name)
        if group is None:
            group = state.create_group(group_name, by_app=True, order=group_order)
    created: list[Tag] = []
    for name, order in zip(names, orders, strict=True):
        tag = state.create_tag(group, name, by_app=True, order=order)
        if tag not in created:
            created.append(tag)
    return {"tag_group": _group_json(group, created, with_deleted=False)}


@route("externalcontact/edit_corp_tag", "POST")
def edit_corp_tag(state: SimState, call: Call) -> dict[str, Any]:
    """Rename or reorder a tag or group the app created."""
    item_id = call.text("id", required=True)
    name = _name(call.body["name"], "name") if "name" in call.body else None
    order = _order(call.body["order"], "order") if "order" in call.body else None
    tag = state.live_tag(item_id)
    if tag is not None:
        if not tag.by_app:
            raise ApiError(NOT_CREATED_BY_APP, "no privilege: tag not created by this app")
        siblings = [state.tags[t] for t in state.groups[tag.group_id].tag_ids]
        if name is not None and any(
            s.name == name and not s.deleted and s is not tag for s in siblings
        ):
            raise ApiError(NAME_EXISTS, f"tag name exists: {name}")
        tag.name = name if name is not None else tag.name
        tag.order = order if order is not None else tag.order
        return {}
    group = state.groups.get(item_id)
    if group is None or group.deleted:
        raise ApiError(INVALID_TAG, f"invalid tag id: {item_id}")
    if not group.by_app:
        raise ApiError(NOT_CREATED_BY_APP, "no privilege: group not created by this app")
    if name is not None and any(
        g.name == name and not g.deleted and g is not group for g in state.groups.values()
    ):
        raise ApiError(NAME_EXISTS, f"group name exists: {name}")
    group.name = name if name is not None else group.name
    group.order = order if order is not None else group.order
    return {}


@route("externalcontact/del_corp_tag", "POST")
def del_corp_tag(state: SimState, call: Call) -> dict[str, Any]:
    """Delete tags and groups the app created; emptying a group deletes it."""
    tag_ids = call.strings("tag_id")
    group_ids = call.strings("group_id")
    if not tag_ids and not group_ids:
        raise ApiError(INVALID, "tag_id and group_id must not both be empty")
    for tag_id in tag_ids:
        tag = state.live_tag(tag_id)
        if tag is None:
            raise ApiError(INVALID_TAG, f"invalid tag id: {tag_id}")
        if not tag.by_app:
            raise ApiError(NOT_CREATED_BY_APP, "no privilege: tag not created by this app")
    for group_id in group_ids:
        group = state.groups.get(group_id)
        if group is None or group.deleted:
            raise ApiError(INVALID_TAG, f"invalid group id: {group_id}")
        if not group.by_app:
            raise ApiError(NOT_CREATED_BY_APP, "no privilege: group not created by this app")
    for tag_id in dict.fromkeys(tag_ids):
        if not state.tags[tag_id].deleted:
            state.delete_tag(tag_id)
    for group_id in dict.fromkeys(group_ids):
        if not state.groups[group_id].deleted:
            state.delete_group(group_id)
    return {}


@route("externalcontact/mark_tag", "POST")
def mark_tag(state: SimState, call: Call) -> dict[str, Any]:
    """Add and remove corp (and rule-group) tags on one member's customer; no callback follows."""
    add = call.strings("add_tag")
    remove = call.strings("remove_tag")
    if not add and not remove:
        raise ApiError(INVALID, "add_tag and remove_tag must not both be empty")
    relation = existing_relation(
        state, call.text("userid", required=True), call.text("external_userid", required=True)
    )
    for tag_id in add + remove:
        if state.live_tag(tag_id) is None and tag_id not in state.rule_tags:
            raise ApiError(INVALID_TAG, f"invalid tag id: {tag_id}")
    for tag_id in add:
        marked = relation.rule_tag_ids if tag_id in state.rule_tags else relation.tag_ids
        if tag_id not in marked:
            marked.append(tag_id)
    # rule-group tags can be marked and removed too (doc 92118); personal tags have no id
    relation.tag_ids = [t for t in relation.tag_ids if t not in set(remove)]
    relation.rule_tag_ids = [t for t in relation.rule_tag_ids if t not in set(remove)]
    return {}

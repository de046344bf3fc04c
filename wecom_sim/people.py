"""What people do in WeCom that the bot hears about: scans, deletions, tag edits, 群发 confirms."""

from __future__ import annotations

import calendar
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from wecom_sim.crypto import random_id
from wecom_sim.events import (
    add_external_contact_xml,
    change_external_tag_xml,
    del_external_contact_xml,
    del_follow_user_xml,
    edit_external_contact_xml,
)
from wecom_sim.models import Relation, RuleTag, WelcomeRecord
from wecom_sim.state import SimState

CHINA = timezone(timedelta(hours=8))  # quotas follow the corp's calendar month


@dataclass(frozen=True)
class Scanned:
    """The state changes of one scan, before its callback is delivered."""

    external_userid: str
    userid: str
    welcome_code: str | None
    xml: str | None  # None: no event (the customer was already a friend)


def scan(
    state: SimState,
    state_param: str,
    *,
    external_userid: str | None,
    name: str | None,
    unionid: str | None,
    chatted: bool | None = None,
) -> Scanned:
    """Add the customer to the next member of the live code whose state is `state_param`.

    A re-add of a pair that were friends before counts as having chatted unless `chatted`
    says otherwise: its event carries State but no WelcomeCode.
    """
    way = state.contact_way_by_state(state_param)
    if way is None:
        raise LookupError(f"no contact way with state {state_param!r}")
    if not way.user:
        raise LookupError(f"contact way {way.config_id} has no users (parties are not simulated)")
    userid = way.user[way.next_user % len(way.user)]
    way.next_user += 1
    customer = state.new_customer(external_userid, name, unionid)
    ext = customer.external_userid
    if state.relation(userid, ext) is not None:
        # Already friends: WeCom adds nobody, so no add_external_contact, no State and
        # no WelcomeCode (the event fires when a member adds a customer, doc 92130).
        return Scanned(ext, userid, None, None)
    state.add_relation(
        Relation(userid, ext, state.now_int(), state=way.state, add_way=1, oper_userid=ext)
    )
    welcome_code = None
    if chatted is None:
        chatted = (userid, ext) in state.former_pairs
    if not chatted:  # no WelcomeCode once member and customer have chatted (doc 92130)
        welcome_code = random_id("", 43)
        state.welcomes[welcome_code] = WelcomeRecord(welcome_code, userid, ext, state.now())
    xml = add_external_contact_xml(
        state.corp_id, userid, ext, state=way.state or None, welcome_code=welcome_code
    )
    return Scanned(ext, userid, welcome_code, xml)


def add_relation(
    state: SimState,
    userid: str,
    external_userid: str | None = None,
    *,
    name: str | None = None,
    unionid: str | None = None,
    add_state: str = "",
    tag_ids: list[str] | None = None,
    personal_tags: list[tuple[str, str]] | None = None,
) -> str:
    """Make a member and a customer friends without any event; return the external_userid.

    `tag_ids` may hold corp and rule-group tag ids; `personal_tags` are (group, name) pairs.
    """
    if userid not in state.staff:
        raise LookupError(f"unknown staff {userid!r}")
    for tag_id in tag_ids or []:
        if state.live_tag(tag_id) is None and tag_id not in state.rule_tags:
            raise ValueError(f"unknown tag id {tag_id!r}")
    customer = state.new_customer(external_userid, name, unionid)
    relation = state.relation(userid, customer.external_userid)
    if relation is None:
        relation = Relation(userid, customer.external_userid, state.now_int(), state=add_state)
        state.add_relation(relation)
    for tag_id in tag_ids or []:
        marked = relation.rule_tag_ids if tag_id in state.rule_tags else relation.tag_ids
        if tag_id not in marked:
            marked.append(tag_id)
    for pair in personal_tags or []:
        if tuple(pair) not in relation.personal_tags:
            relation.personal_tags.append((str(pair[0]), str(pair[1])))
    return customer.external_userid


def add_rule_tag(state: SimState, group_name: str, tag_name: str) -> str:
    """Create a rule-group (规则组) tag and return its id; get_corp_tag_list never lists it."""
    for rule in state.rule_tags.values():
        if (rule.group_name, rule.name) == (group_name, tag_name):
            return rule.tag_id
    rule = RuleTag(random_id("et", 20), tag_name, group_name)
    state.rule_tags[rule.tag_id] = rule
    return rule.tag_id


def remove_relation(
    state: SimState, external_userid: str, userid: str, *, by_customer: bool
) -> str:
    """Delete a relation and return the del_follow_user / del_external_contact event."""
    if state.relation(userid, external_userid) is None:
        raise LookupError(f"{userid!r} has no customer {external_userid!r}")
    state.remove_relation(userid, external_userid)
    if by_customer:
        return del_follow_user_xml(state.corp_id, userid, external_userid)
    return del_external_contact_xml(state.corp_id, userid, external_userid)


def staff_edit_tags(
    state: SimState, userid: str, external_userid: str, add: list[str], remove: list[str]
) -> str:
    """Change a relation's tags from the WeCom client and return the edit event."""
    relation = state.relation(userid, external_userid)
    if relation is None:
        raise LookupError(f"{userid!r} has no customer {external_userid!r}")
    for tag_id in add + remove:
        if state.live_tag(tag_id) is None:
            raise ValueError(f"unknown tag id {tag_id!r}")
    relation.tag_ids += [t for t in dict.fromkeys(add) if t not in relation.tag_ids]
    relation.tag_ids = [t for t in relation.tag_ids if t not in set(remove)]
    return edit_external_contact_xml(state.corp_id, userid, external_userid)


def admin_create_tag(state: SimState, group_name: str, tag_name: str) -> tuple[str, list[str]]:
    """Create a tag in the console (and its group if new); return its id and the events."""
    group = state.live_group_by_name(group_name)
    new_group = group is None
    if group is None:
        group = state.create_group(group_name, by_app=False)
    known = set(group.tag_ids)
    tag = state.create_tag(group, tag_name, by_app=False)
    if new_group:
        return tag.tag_id, [
            change_external_tag_xml(state.corp_id, "create", group.group_id, "tag_group")
        ]
    if tag.tag_id in known:
        return tag.tag_id, []  # the name already existed: nothing changed
    return tag.tag_id, [change_external_tag_xml(state.corp_id, "create", tag.tag_id, "tag")]


def admin_rename(state: SimState, item_id: str, new_name: str) -> str:
    """Rename a tag or group in the console and return the update event."""
    tag = state.live_tag(item_id)
    if tag is not None:
        tag.name = new_name
        return change_external_tag_xml(state.corp_id, "update", item_id, "tag")
    group = state.groups.get(item_id)
    if group is None or group.deleted:
        raise LookupError(f"unknown tag or group id {item_id!r}")
    group.name = new_name
    return change_external_tag_xml(state.corp_id, "update", item_id, "tag_group")


def admin_delete_tag(state: SimState, tag_id: str) -> str:
    """Delete a tag in the console and return the delete event."""
    if state.live_tag(tag_id) is None:
        raise LookupError(f"unknown tag id {tag_id!r}")
    state.delete_tag(tag_id)
    return change_external_tag_xml(state.corp_id, "delete", tag_id, "tag")


def admin_delete_group(state: SimState, group_id: str) -> str:
    """Delete a group (and its tags) in the console and return the delete event."""
    group = state.groups.get(group_id)
    if group is None or group.deleted:
        raise LookupError(f"unknown group id {group_id!r}")
    state.delete_group(group_id)
    return change_external_tag_xml(state.corp_id, "delete", group_id, "tag_group")


def confirm_group_msg(state: SimState, msgid: str, userid: str) -> dict[str, int]:
    """Send a 群发 task's messages for one member; return external_userid (or chat_id) -> status."""
    msg = state.group_msgs.get(msgid)
    if msg is None:
        raise LookupError(f"unknown msgid {msgid!r}")
    task = msg.tasks.get(userid)
    if task is None:
        raise LookupError(f"{userid!r} has no part in {msgid!r}")
    now = state.now_int()
    local = datetime.fromtimestamp(now, CHINA)
    month = local.strftime("%Y-%m")
    quota = state.monthly_quota or calendar.monthrange(local.year, local.month)[1]
    statuses: dict[str, int] = {}
    for send in msg.sends:
        if send.userid != userid or send.status != 0:
            continue
        # a customer or a customer group each has its own monthly quota
        target = send.chat_id or send.external_userid
        if send.chat_id:
            if state.live_chat(send.chat_id) is None:
                send.status = 2  # dismissed since: nothing to post to
        elif state.relation(userid, send.external_userid) is None:
            send.status = 2
        if send.status == 0 and state.quota_used[(target, month)] >= quota:
            send.status = 3
        elif send.status == 0:
            state.quota_used[(target, month)] += 1
            send.status = 1
        send.send_time = now
        statuses[target] = send.status
    task.status = 2
    task.send_time = now
    return statuses


def seed(
    state: SimState,
    staff: int,
    customers_per_staff: int,
    tag_groups: dict[str, list[str]] | None,
    prefix: str,
) -> None:
    """Bulk-create members, customers, relations and console tags, without events."""
    rng = random.Random(prefix)  # the same prefix seeds the same tag spread
    catalogue: list[list[str]] = []
    for group_name, names in (tag_groups or {}).items():
        group = state.live_group_by_name(group_name) or state.create_group(group_name, by_app=False)
        catalogue.append([state.create_tag(group, n, by_app=False).tag_id for n in names])
    now = state.now_int()
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    for index in range(staff):
        userid = f"{prefix}_u{index:04d}"
        state.add_staff(userid, f"{prefix}员工{index}")
        for number in range(customers_per_staff):
            ext = "wm" + "".join(rng.choices(alphabet, k=30))
            state.new_customer(ext, f"{prefix}客户{index}-{number}", None)
            tags = [rng.choice(ids) for ids in catalogue if ids and rng.random() < 0.5]
            state.add_relation(
                Relation(userid, ext, now - rng.randrange(86400 * 365), state=prefix, tag_ids=tags)
            )

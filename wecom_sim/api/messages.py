"""Message APIs: send_welcome_msg, 群发 (add_msg_template and its results), message/send.

See https://developer.work.weixin.qq.com/document/path/92599, 92135 and 90236.
"""

from __future__ import annotations

from typing import Any

from wecom_sim.api.params import INVALID, MISSING, Call, offset_page
from wecom_sim.api.registry import route
from wecom_sim.crypto import random_id
from wecom_sim.models import GroupMsg, GroupMsgSend, GroupMsgTask, Relation
from wecom_sim.state import ApiError, SimState

WELCOME_CODE_MISSING = 41049
WELCOME_CODE_INVALID = 41050
WELCOME_ALREADY_SENT = 41051
# The doc gives no code for over-long text; 45002 is WeCom's global "content size out of limit".
CONTENT_TOO_LONG = 45002
TOO_MANY_ATTACHMENTS = 41064
INVALID_ATTACHMENT = 41065
MSGID_MISSING = 41046
MSGID_INVALID = 41047
NO_CUSTOMERS = 41048
AGENT_MISMATCH = 301002
ALL_RECIPIENTS_INVALID = 81013
NO_RECIPIENTS = 82001
INVALID_MSGTYPE = 40008
NO_RELATION = 84061
TASK_NOT_READY = 41063
CHAT_NOT_FOUND = 40050
MSG_TEMPLATE_CHATS_MAX = 2000
ATTACHMENT_TYPES = {"image", "link", "miniprogram", "video", "file"}
APP_MSG_TYPES = {
    "text", "image", "voice", "video", "file", "textcard", "news", "mpnews", "markdown",
    "miniprogram_notice", "template_card",
}  # fmt: skip


def _text_content(call: Call, limit: int) -> str:
    text = call.body.get("text") or {}
    content = text.get("content", "") if isinstance(text, dict) else None
    if not isinstance(content, str):
        raise ApiError(INVALID, "invalid parameter: text.content")
    if len(content.encode()) > limit:
        raise ApiError(CONTENT_TOO_LONG, f"content size out of limit: {limit} bytes")
    return content


def _attachments(call: Call) -> list[dict[str, Any]]:
    attachments = call.objects("attachments")
    if len(attachments) > 9:
        raise ApiError(TOO_MANY_ATTACHMENTS, "more than 9 attachments")
    for attachment in attachments:
        kind = attachment.get("msgtype")
        if kind not in ATTACHMENT_TYPES or not isinstance(attachment.get(kind), dict):
            raise ApiError(INVALID_ATTACHMENT, f"invalid attachment: {kind}")
        if kind == "link" and not attachment["link"].get("url"):
            raise ApiError(INVALID_ATTACHMENT, "link attachment needs url")
    return attachments


@route("externalcontact/send_welcome_msg", "POST")
def send_welcome_msg(state: SimState, call: Call) -> dict[str, Any]:
    """Send the welcome message for a welcome code: valid welcome_code_ttl seconds, once."""
    code = call.text("welcome_code", required=True, missing=WELCOME_CODE_MISSING)
    content = _text_content(call, 4000)
    attachments = _attachments(call)
    if not content and not attachments:
        raise ApiError(INVALID, "text and attachments must not both be empty")
    record = state.welcomes.get(code)
    if record is None:
        raise ApiError(WELCOME_CODE_INVALID, "invalid welcome_code")
    if record.sent_at is not None:
        raise ApiError(WELCOME_ALREADY_SENT, "welcome msg already sent or chat started")
    now = state.now()
    if now - record.issued_at > state.welcome_code_ttl:
        raise ApiError(WELCOME_CODE_INVALID, "invalid welcome_code: expired")
    if state.relation(record.userid, record.external_userid) is None:
        # the customer deleted the member (or was deleted) before the welcome went out
        raise ApiError(NO_RELATION, "not external contact")
    record.text = content
    record.attachments = attachments
    record.sent_at = now
    return {}


def _matches(relation: Relation, tag_filter: list[list[str]]) -> bool:
    # OR inside a group_list entry, AND across entries
    return all(any(t in relation.tag_ids for t in group) for group in tag_filter)


def _tag_filter(call: Call) -> list[list[str]]:
    raw = call.body.get("tag_filter") or {}
    groups = raw.get("group_list", []) if isinstance(raw, dict) else None
    if not isinstance(groups, list):
        raise ApiError(INVALID, "invalid parameter: tag_filter")
    result = []
    for group in groups:
        tags = group.get("tag_list") if isinstance(group, dict) else None
        if not isinstance(tags, list) or len(tags) > 100:
            raise ApiError(INVALID, "invalid parameter: tag_filter.group_list.tag_list")
        result.append([str(t) for t in tags])
    return result


def _pick_relation(state: SimState, external_userid: str, sender: str) -> Relation | None:
    if sender:
        return state.relation(sender, external_userid)
    followers = state.by_customer.get(external_userid, {}).values()
    # WeCom pushes to the member who last chatted; the newest relation stands in for that
    return max(followers, key=lambda r: r.createtime, default=None)


def _owned_chats(state: SimState, call: Call, sender: str) -> list[str]:
    """Return the groups a group 群发 goes to: chat_id_list, else all the sender's groups.

    Each listed group must be a live group the sender owns: an unknown, dismissed or other
    owner's group is refused with 40050 (chatid 不存在; WeCom does not document which code
    it answers, docs/wecom-groups.md).
    """
    listed = list(dict.fromkeys(call.strings("chat_id_list")))
    if len(listed) > MSG_TEMPLATE_CHATS_MAX:
        raise ApiError(INVALID, f"more than {MSG_TEMPLATE_CHATS_MAX} chat_id_list")
    if not listed:  # the owner picks among their groups in the client: all of them here
        return [
            c.chat_id for c in state.group_chats.values() if c.owner == sender and not c.dismissed
        ]
    for chat_id in listed:
        chat = state.live_chat(chat_id)
        if chat is None or chat.owner != sender:
            raise ApiError(CHAT_NOT_FOUND, f"invalid chat_id: {chat_id} (not a group of {sender})")
    return listed


@route("externalcontact/add_msg_template", "POST")
def add_msg_template(state: SimState, call: Call) -> dict[str, Any]:
    """Create a 群发 task; nothing is sent until the member confirms it."""
    chat_type = call.text("chat_type") or "single"
    if chat_type not in ("single", "group"):
        raise ApiError(INVALID, "invalid chat_type")
    sender = call.text("sender")
    if sender and sender not in state.staff:
        raise ApiError(60111, f"userid not found: {sender}")
    targets = list(dict.fromkeys(call.strings("external_userid")))
    if len(targets) > 10000:
        raise ApiError(INVALID, "more than 10000 external_userid")
    content = _text_content(call, 4000)
    attachments = _attachments(call)
    if not content and not attachments:
        raise ApiError(INVALID, "text and attachments must not both be empty")
    tag_filter = _tag_filter(call)
    msg = GroupMsg(
        msgid=random_id("msg", 27),
        chat_type=chat_type,
        create_time=state.now_int(),
        created_at=state.now(),
        sender=sender,
        text=content,
        attachments=attachments,
        fail_list=[],
    )
    if chat_type == "group":
        if not sender:
            raise ApiError(MISSING, "missing parameter: sender (needed for group)")
        msg.tasks[sender] = GroupMsgTask(sender)
        msg.sends = [GroupMsgSend("", sender, chat_id=c) for c in _owned_chats(state, call, sender)]
    else:
        if not targets and not sender:
            raise ApiError(INVALID, "external_userid and sender must not both be empty")
        if not targets:
            targets = list(state.by_user.get(sender, {}))
        for external_userid in targets:
            relation = _pick_relation(state, external_userid, sender)
            if relation is None:
                msg.fail_list.append(external_userid)
            elif _matches(relation, tag_filter):
                msg.tasks.setdefault(relation.userid, GroupMsgTask(relation.userid))
                msg.sends.append(GroupMsgSend(external_userid, relation.userid))
        if not msg.sends:
            raise ApiError(NO_CUSTOMERS, "no customers to send")
    state.group_msgs[msg.msgid] = msg
    return {"fail_list": msg.fail_list, "msgid": msg.msgid}


def _group_msg(state: SimState, call: Call) -> GroupMsg:
    msgid = call.text("msgid", required=True, missing=MSGID_MISSING)
    msg = state.group_msgs.get(msgid)
    if msg is None:
        raise ApiError(MSGID_INVALID, f"invalid msgid: {msgid}")
    return msg


@route("externalcontact/get_groupmsg_list_v2", "POST")
def get_groupmsg_list_v2(state: SimState, call: Call) -> dict[str, Any]:
    """Return the 群发 tasks created in a time range, paged."""
    chat_type = call.text("chat_type", required=True)
    start = call.integer("start_time")
    end = call.integer("end_time")
    creator = call.text("creator")
    limit = call.limit(50, 100)
    msgs = [
        m
        for m in state.group_msgs.values()
        if m.chat_type == chat_type
        and start <= m.create_time <= end
        and (not creator or m.sender == creator)
    ]
    page, next_cursor = offset_page(msgs, call.text("cursor"), limit)
    return {
        "group_msg_list": [
            {
                "msgid": m.msgid,
                "creator": m.sender,
                "create_time": m.create_time,
                "create_type": 1,
                "text": {"content": m.text},
                "attachments": m.attachments,
            }
            for m in page
        ],
        "next_cursor": next_cursor,
    }


@route("externalcontact/get_groupmsg_task", "POST")
def get_groupmsg_task(state: SimState, call: Call) -> dict[str, Any]:
    """Return each sender's status for a 群发 task (0 unsent, 2 sent), paged.

    Right after creation WeCom is still dispatching the task and answers 41063 ("群发消息
    正在被派发中，请稍后再试", doc 93338); the simulator does so for groupmsg_task_delay s.
    """
    msg = _group_msg(state, call)
    if state.now() - msg.created_at < state.groupmsg_task_delay:
        raise ApiError(TASK_NOT_READY, "group msg is being dispatched, try again later")
    page, next_cursor = offset_page(
        list(msg.tasks.values()), call.text("cursor"), call.limit(500, 1000)
    )
    tasks = [{"userid": t.userid, "status": t.status, "send_time": t.send_time} for t in page]
    return {"task_list": tasks, "next_cursor": next_cursor}


@route("externalcontact/get_groupmsg_send_result", "POST")
def get_groupmsg_send_result(state: SimState, call: Call) -> dict[str, Any]:
    """Return each customer's status for one sender of a 群发 task, paged."""
    msg = _group_msg(state, call)
    userid = call.text("userid", required=True)
    sends = [s for s in msg.sends if s.userid == userid]
    page, next_cursor = offset_page(sends, call.text("cursor"), call.limit(500, 1000))
    rows = [
        {
            **({"chat_id": s.chat_id} if s.chat_id else {"external_userid": s.external_userid}),
            "userid": s.userid,
            "status": s.status,
            "send_time": s.send_time,
        }
        for s in page
    ]
    return {"send_list": rows, "next_cursor": next_cursor}


def _deliver_app_message(state: SimState, userid: str) -> bool:
    """Count one app message to a member; False when WeCom would drop it silently.

    An app may send each member at most 30 messages a minute and 1,000 an hour; beyond
    that WeCom still answers errcode 0 but nothing arrives (doc 90312, 应用消息频率).
    """
    now = state.now()
    times = [t for t in state.app_msg_times.get(userid, ()) if now - t < 3600]
    last_minute = sum(1 for t in times if now - t < 60)
    if last_minute >= state.app_msgs_per_minute or len(times) >= state.app_msgs_per_hour:
        state.app_msg_times[userid] = times
        state.app_msg_drops[userid] += 1
        return False
    times.append(now)
    state.app_msg_times[userid] = times
    return True


@route("message/send", "POST")
def message_send(state: SimState, call: Call) -> dict[str, Any]:
    """Record an app message to members; unknown recipients come back as invaliduser."""
    if call.integer("agentid") != state.agent_id:
        raise ApiError(AGENT_MISMATCH, "access_token and agentid mismatch")
    msgtype = call.text("msgtype", required=True)
    if msgtype not in APP_MSG_TYPES or not isinstance(call.body.get(msgtype), dict):
        raise ApiError(INVALID_MSGTYPE, f"invalid message type: {msgtype}")
    if msgtype == "text":
        _text_content(call, 2048)
    touser = [u for u in call.text("touser").split("|") if u]
    toparty = [p for p in call.text("toparty").split("|") if p]
    totag = [t for t in call.text("totag").split("|") if t]
    if not touser and not toparty and not totag:
        raise ApiError(NO_RECIPIENTS, "touser, toparty and totag are all empty")
    if touser == ["@all"]:
        valid = [s.userid for s in state.staff.values() if s.active]
        invalid: list[str] = []
    else:
        valid = [u for u in touser if u in state.staff]
        invalid = [u for u in touser if u not in state.staff]
    if not valid:  # departments and tags are not simulated: they never reach anyone
        raise ApiError(ALL_RECIPIENTS_INVALID, "all recipients invalid")
    delivered = [u for u in valid if _deliver_app_message(state, u)]  # counts every member
    if delivered:
        state.app_messages.append(dict(call.body))
    return {
        "invaliduser": "|".join(invalid),
        "invalidparty": "|".join(toparty),
        "invalidtag": "|".join(totag),
        "unlicenseduser": "",
        "msgid": random_id("", 32),
        "response_code": random_id("", 40),
    }

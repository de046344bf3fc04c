"""The simulator's records: staff, customers, relations, tags, live codes, messages, groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Staff:
    """A corp member who can have customers."""

    userid: str
    name: str = ""
    active: bool = True


@dataclass
class Customer:
    """An external contact (a WeChat user)."""

    external_userid: str
    name: str
    unionid: str
    type: int = 1  # 1 WeChat, 2 WeCom
    gender: int = 0
    avatar: str = ""
    position: str = ""
    corp_name: str = ""
    corp_full_name: str = ""


@dataclass
class Relation:
    """A member's follow of a customer (one follow_user entry), with its corp tags."""

    userid: str
    external_userid: str
    createtime: int
    state: str = ""
    add_way: int = 1
    remark: str = ""
    description: str = ""
    remark_corp_name: str = ""
    remark_mobiles: list[str] = field(default_factory=list)
    oper_userid: str = ""
    tag_ids: list[str] = field(default_factory=list)  # kept in the order tags were marked
    # Tags the bot must never touch: personal ones (type 2, group name and tag name, no id)
    # the member made in the client, and rule-group tags (type 3) by id.
    personal_tags: list[tuple[str, str]] = field(default_factory=list)
    rule_tag_ids: list[str] = field(default_factory=list)


@dataclass
class TagGroup:
    """A corp tag group; deleted ones are kept so filtered queries can report them."""

    group_id: str
    name: str
    create_time: int
    order: int = 0
    by_app: bool = False  # the app (not the admin console) created it
    deleted: bool = False
    tag_ids: list[str] = field(default_factory=list)


@dataclass
class Tag:
    """A corp tag in a group."""

    tag_id: str
    name: str
    group_id: str
    create_time: int
    order: int = 0
    by_app: bool = False
    deleted: bool = False


@dataclass
class RuleTag:
    """A rule-group (规则组) tag: marked on relations, not listed by get_corp_tag_list."""

    tag_id: str
    name: str
    group_name: str


@dataclass
class ContactWay:
    """A 联系我 configuration (channel live code)."""

    config_id: str
    type: int
    scene: int
    created_at: int
    style: int = 1
    remark: str = ""
    skip_verify: bool = True
    state: str = ""
    qr_code: str = ""
    user: list[str] = field(default_factory=list)
    party: list[int] = field(default_factory=list)
    is_temp: bool = False
    expires_in: int = 0
    chat_expires_in: int = 0
    unionid: str = ""
    is_exclusive: bool = False
    conclusions: dict[str, Any] = field(default_factory=dict)
    next_user: int = 0  # round-robin position for scans

    def to_api(self) -> dict[str, Any]:
        """Return the contact_way object as get_contact_way answers it."""
        return {
            "config_id": self.config_id,
            "type": self.type,
            "scene": self.scene,
            "style": self.style,
            "remark": self.remark,
            "skip_verify": self.skip_verify,
            "state": self.state,
            "qr_code": self.qr_code,
            "user": list(self.user),
            "party": list(self.party),
            "is_temp": self.is_temp,
            "expires_in": self.expires_in,
            "chat_expires_in": self.chat_expires_in,
            "unionid": self.unionid,
            "is_exclusive": self.is_exclusive,
            "conclusions": self.conclusions,
        }


@dataclass
class WelcomeRecord:
    """A welcome code handed out with an add event, and the message sent with it."""

    welcome_code: str
    userid: str
    external_userid: str
    issued_at: float
    text: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    sent_at: float | None = None


@dataclass
class GroupMsgTask:
    """One sender's part of a 群发 task."""

    userid: str
    status: int = 0  # 0 unsent, 2 sent
    send_time: int = 0


@dataclass
class GroupMsgSend:
    """One customer's (chat_type single) or customer group's (group) delivery of a 群发."""

    external_userid: str  # "" for a group delivery
    userid: str
    status: int = 0  # 0 unsent, 1 sent, 2 not a friend any more, 3 over quota
    send_time: int = 0
    chat_id: str = ""  # the customer group of a chat_type group 群发


@dataclass
class GroupMsg:
    """A 群发 task created by add_msg_template."""

    msgid: str
    chat_type: str
    create_time: int
    sender: str
    text: str
    attachments: list[dict[str, Any]]
    fail_list: list[str]
    created_at: float = 0.0  # simulated clock, for the 41063 window after creation
    tasks: dict[str, GroupMsgTask] = field(default_factory=dict)
    sends: list[GroupMsgSend] = field(default_factory=list)


@dataclass
class ChatMember:
    """One member of a customer group: a corp member (type 1) or an external contact (2)."""

    userid: str
    type: int
    join_time: int
    join_scene: int  # 1 invited directly, 2 through a member's link, 3 scanned the group QR
    invitor: str = ""  # a corp member who invited them
    group_nickname: str = ""
    state: str = ""  # the join way's state, when they came through one


@dataclass
class GroupChat:
    """A customer group (客户群) owned by a corp member."""

    chat_id: str
    name: str
    owner: str
    create_time: int
    notice: str = ""
    admins: list[str] = field(default_factory=list)
    members: dict[str, ChatMember] = field(default_factory=dict)  # in joining order
    member_version: str = ""
    dismissed: bool = False


@dataclass
class JoinWay:
    """A 加入群聊 configuration: a QR code (scene 2) or mini-program button (1) to groups."""

    config_id: str
    scene: int
    created_at: int
    chat_id_list: list[str] = field(default_factory=list)
    remark: str = ""
    auto_create_room: int = 1
    room_base_name: str = ""
    room_base_id: int = 0
    state: str = ""
    qr_code: str = ""
    rooms_created: int = 0  # groups auto-created so far, for the next one's number

    def to_api(self) -> dict[str, Any]:
        """Return the join_way object as get_join_way answers it."""
        answer: dict[str, Any] = {
            "config_id": self.config_id,
            "scene": self.scene,
            "remark": self.remark,
            "auto_create_room": self.auto_create_room,
            "room_base_name": self.room_base_name,
            "room_base_id": self.room_base_id,
            "chat_id_list": list(self.chat_id_list),
            "state": self.state,
        }
        if self.scene == 2:
            answer["qr_code"] = self.qr_code
        return answer

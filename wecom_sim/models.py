"""The records the simulator keeps: staff, customers, relations, tags, live codes, messages."""

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
    """One customer's delivery of a 群发 message."""

    external_userid: str
    userid: str
    status: int = 0  # 0 unsent, 1 sent, 2 not a friend any more, 3 over quota
    send_time: int = 0


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

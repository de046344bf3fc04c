"""Typed results of WeCom API calls, parsed from raw JSON at the adapter's edge.

Pydantic models, frozen: an id WeCom always sends is required (an answer without it is a
WeComError, not a customer with an empty id), a field WeCom leaves out when empty takes
its default, and a field of the wrong JSON type is refused rather than coerced into text.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from bot import wecom_limits as limits
from bot.errors import WeComError

Raw = Mapping[str, Any]
MALFORMED = -3  # our errcode for an answer that does not parse (-2 is the network's)


def _frozen(value: Any) -> Any:
    return MappingProxyType(dict(value)) if isinstance(value, Mapping) else value


def _content(value: Any) -> Any:
    """Take the text of a {"content": ...} object (a 群发's text); none is empty."""
    if value is None:
        return ""
    return value.get("content", "") if isinstance(value, Mapping) else value


def _split_bars(value: Any) -> Any:
    """Split message/send's "u1|u2" lists of unreachable recipients."""
    if value is None:
        return ()
    return tuple(x for x in value.split("|") if x) if isinstance(value, str) else value


FrozenMap = Annotated[Mapping[str, Any], BeforeValidator(_frozen)]
Bars = Annotated[tuple[str, ...], BeforeValidator(_split_bars)]


class WeComModel(BaseModel):
    """A frozen record of one WeCom answer: unknown fields ignored, aliases as WeCom names."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    @classmethod
    def parse(cls, raw: Raw, *, api: str = "") -> Self:
        """Parse one raw object, or raise WeComError naming what is missing or wrong."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise malformed(exc, api) from None


def malformed(exc: ValidationError, api: str) -> WeComError:
    """Return the WeComError for an answer the models refuse: its first few problems."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in exc.errors()[:3]
    )
    return WeComError(MALFORMED, f"malformed answer ({problems})", api=api)


class FollowUserTag(WeComModel):
    """A tag a member put on a customer (as in externalcontact/get)."""

    group_name: str = ""
    tag_name: str = ""
    tag_id: str = ""  # personal tags (type 2) have none
    type: int  # 1 corp tag, 2 personal tag, 3 rule-group tag


class Relation(WeComModel):
    """One member's relation to a customer: what externalcontact/get and batch share."""

    userid: str
    remark: str = ""
    description: str = ""
    createtime: int = 0
    # WeCom leaves these out when empty
    remark_corp_name: str = ""
    remark_mobiles: tuple[str, ...] = ()
    oper_userid: str = ""
    add_way: int = 0
    state: str = ""


class FollowUser(Relation):
    """One member following a customer, with that member's tags on the customer."""

    tags: tuple[FollowUserTag, ...] = ()


class FollowInfo(Relation):
    """One member's relation to a customer as batch/get_by_user reports it (tag ids only)."""

    tag_ids: tuple[str, ...] = Field(default=(), alias="tag_id")


class ExternalContact(WeComModel):
    """A customer's profile and, from externalcontact/get, everyone following them."""

    external_userid: str
    name: str = ""
    type: int = 1  # 1 WeChat user, 2 WeCom user
    gender: int = 0
    unionid: str = ""  # only when the corp bound a developer account
    avatar: str = ""
    position: str = ""  # position and corp names: WeCom users only
    corp_name: str = ""
    corp_full_name: str = ""
    follow_users: tuple[FollowUser, ...] = Field(default=(), alias="follow_user")


class ContactFollow(WeComModel):
    """One (customer, member) pair from batch/get_by_user."""

    contact: ExternalContact = Field(alias="external_contact")
    follow_info: FollowInfo


class ContactWay(WeComModel):
    """A 联系我 configuration (channel live code) as get_contact_way returns it."""

    config_id: str
    type: int = 0
    scene: int = 0
    style: int = 0
    remark: str = ""
    skip_verify: bool = True
    state: str = ""
    qr_code: str = ""
    user: tuple[str, ...] = ()
    party: tuple[int, ...] = ()
    is_temp: bool = False
    expires_in: int = 0
    chat_expires_in: int = 0
    unionid: str = ""
    is_exclusive: bool = False
    conclusions: FrozenMap = Field(default_factory=lambda: MappingProxyType({}))


class CorpTag(WeComModel):
    """A corp tag (企业标签) in the catalogue."""

    id: str
    name: str
    create_time: int = 0
    order: int = 0
    deleted: bool = False


class TagGroupInfo(WeComModel):
    """A corp tag group with its tags."""

    group_id: str
    group_name: str
    create_time: int = 0
    order: int = 0
    deleted: bool = False
    tags: tuple[CorpTag, ...] = Field(default=(), alias="tag")


class GroupMsg(WeComModel):
    """A 群发 message as get_groupmsg_list_v2 lists it: who created it, when, with what text."""

    msgid: str
    creator: str = ""  # none for a message the corp created in the admin console
    create_time: int = 0
    create_type: int = 0  # 0 by the corp (admin), 1 by a member
    text: Annotated[str, BeforeValidator(_content)] = ""
    attachments: tuple[FrozenMap, ...] = ()


class GroupMsgTask(WeComModel):
    """A member's confirmation state for one 群发 message (0 unsent, 2 sent)."""

    userid: str
    status: int
    send_time: int = 0


class GroupMsgSendResult(WeComModel):
    """Delivery to one customer or group: 0 unsent, 1 sent, 2 not a friend, 3 quota."""

    userid: str
    status: int
    external_userid: str = ""
    chat_id: str = ""
    send_time: int = 0


class AppMessageResult(WeComModel):
    """What message/send reports: the message id and the recipients it could not reach."""

    msgid: str = ""
    invalid_users: Bars = Field(default=(), alias="invaliduser")
    invalid_parties: Bars = Field(default=(), alias="invalidparty")
    invalid_tags: Bars = Field(default=(), alias="invalidtag")
    response_code: str = ""


class WebIdentity(WeComModel):
    """Who signed in through WeCom's OAuth or web login: a member's userid, or an outsider."""

    userid: str = ""  # empty for someone who is not a member of the corp
    openid: str = ""


class JsapiTicket(WeComModel):
    """A JS-SDK ticket: the corp's (get_jsapi_ticket) or the app's (ticket/get agent_config)."""

    ticket: str = Field(min_length=1)
    expires_in: int = Field(default=7200, gt=0)  # seconds; normally 7200, but WeCom decides


def _userid(value: Any) -> Any:
    """Take the userid of a {"userid": ...} object (group invitor, admin); none is empty."""
    if value is None:
        return ""
    return value.get("userid", "") if isinstance(value, Mapping) else value


UserRef = Annotated[str, BeforeValidator(_userid)]


class GroupChatRef(WeComModel):
    """A customer group as groupchat/list lists it, with its owner's follow status."""

    chat_id: str
    status: int = 0  # 0 owner active, 1 owner left, 2 handover in progress, 3 handed over


class GroupChatMember(WeComModel):
    """A member of a customer group: a corp member (type 1) or an external contact (2)."""

    userid: str
    type: int
    join_time: int = 0
    join_scene: int = 0  # 1 invited directly, 2 by a member's link, 3 scanned the group QR
    invitor: UserRef = ""  # only when a corp member invited them
    group_nickname: str = ""
    name: str = ""  # only with need_name
    unionid: str = ""  # WeChat users, when the corp bound a developer account
    state: str = ""  # the join way's state, for members who came through one


class GroupChat(WeComModel):
    """A customer group (客户群) as groupchat/get returns it."""

    chat_id: str
    name: str = ""
    owner: str = ""
    create_time: int = 0
    notice: str = ""
    members: tuple[GroupChatMember, ...] = Field(default=(), alias="member_list")
    admins: tuple[UserRef, ...] = Field(default=(), alias="admin_list")
    member_version: str = ""


class JoinWay(WeComModel):
    """A 加入群聊 join way (a group QR code or mini-program button) as get_join_way returns it."""

    config_id: str
    scene: int = 0  # 1 mini-program button, 2 QR code
    remark: str = ""
    auto_create_room: int = 1
    room_base_name: str = ""
    room_base_id: int = 0
    chat_ids: tuple[str, ...] = Field(default=(), alias="chat_id_list")
    qr_code: str = ""  # scene 2 only
    state: str = ""

    def spec(self) -> JoinWaySpec:
        """Return this configuration as a spec, to change and send back whole."""
        return JoinWaySpec.model_validate(
            {
                "chat_ids": self.chat_ids,
                "scene": self.scene,
                "state": self.state,
                "remark": self.remark,
                "auto_create_room": bool(self.auto_create_room),
                "room_base_name": self.room_base_name,
                "room_base_id": self.room_base_id,
            }
        )


class JoinWaySpec(BaseModel):
    """A join way to send: add_join_way's fields, and update_join_way's (which overwrites all).

    Refuses what WeCom would refuse, and a remark WeCom would silently cut, with ValueError.
    """

    model_config = ConfigDict(frozen=True)

    chat_ids: tuple[str, ...] = Field(min_length=1, max_length=limits.JOIN_WAY_CHATS_MAX)
    scene: Literal[1, 2] = 2  # 1 mini-program button, 2 QR code
    state: str = Field(default="", max_length=limits.JOIN_WAY_STATE_MAX)
    remark: str = Field(default="", max_length=limits.JOIN_WAY_REMARK_MAX)
    auto_create_room: bool = True  # open a numbered group when all are full
    room_base_name: str = Field(default="", max_length=limits.JOIN_WAY_ROOM_BASE_NAME_MAX)
    room_base_id: int = Field(default=0, ge=0)

    def body(self) -> dict[str, Any]:
        """Return the JSON body, every field set (an update resets what it leaves out)."""
        return {
            "scene": self.scene,
            "chat_id_list": list(self.chat_ids),
            "state": self.state,
            "remark": self.remark,
            "auto_create_room": int(self.auto_create_room),
            "room_base_name": self.room_base_name,
            "room_base_id": self.room_base_id,
        }

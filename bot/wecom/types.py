"""Typed results of WeCom API calls, parsed from raw JSON at the adapter's edge."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

Raw = Mapping[str, Any]


def _s(d: Raw, key: str) -> str:
    value = d.get(key)
    return "" if value is None else str(value)


def _i(d: Raw, key: str) -> int:
    try:
        return int(d.get(key) or 0)
    except (TypeError, ValueError):
        return 0


def _b(d: Raw, key: str, default: bool = False) -> bool:
    value = d.get(key)
    return default if value is None else bool(value)


def _strs(d: Raw, key: str) -> tuple[str, ...]:
    return tuple(str(v) for v in (d.get(key) or ()))


def _frozen(d: Any) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class FollowUserTag:
    """A corp tag a member put on a customer (as in externalcontact/get)."""

    group_name: str
    tag_name: str
    tag_id: str
    type: int  # 1 corp tag, 2 personal tag, 3 rule-group tag

    @classmethod
    def from_raw(cls, d: Raw) -> FollowUserTag:
        return cls(_s(d, "group_name"), _s(d, "tag_name"), _s(d, "tag_id"), _i(d, "type"))


@dataclass(frozen=True)
class FollowUser:
    """One member following a customer, with that member's tags on the customer."""

    userid: str
    remark: str = ""
    description: str = ""
    createtime: int = 0
    tags: tuple[FollowUserTag, ...] = ()
    remark_corp_name: str = ""
    remark_mobiles: tuple[str, ...] = ()
    oper_userid: str = ""
    add_way: int = 0
    state: str = ""

    @classmethod
    def from_raw(cls, d: Raw) -> FollowUser:
        return cls(
            userid=_s(d, "userid"),
            remark=_s(d, "remark"),
            description=_s(d, "description"),
            createtime=_i(d, "createtime"),
            tags=tuple(FollowUserTag.from_raw(t) for t in d.get("tags") or ()),
            remark_corp_name=_s(d, "remark_corp_name"),
            remark_mobiles=_strs(d, "remark_mobiles"),
            oper_userid=_s(d, "oper_userid"),
            add_way=_i(d, "add_way"),
            state=_s(d, "state"),
        )


@dataclass(frozen=True)
class ExternalContact:
    """A customer's profile and, from externalcontact/get, everyone following them."""

    external_userid: str
    name: str = ""
    type: int = 1  # 1 WeChat user, 2 WeCom user
    gender: int = 0
    unionid: str = ""
    avatar: str = ""
    position: str = ""
    corp_name: str = ""
    corp_full_name: str = ""
    follow_users: tuple[FollowUser, ...] = ()

    @classmethod
    def from_raw(cls, d: Raw, follow_users: tuple[FollowUser, ...] = ()) -> ExternalContact:
        return cls(
            external_userid=_s(d, "external_userid"),
            name=_s(d, "name"),
            type=_i(d, "type") or 1,
            gender=_i(d, "gender"),
            unionid=_s(d, "unionid"),
            avatar=_s(d, "avatar"),
            position=_s(d, "position"),
            corp_name=_s(d, "corp_name"),
            corp_full_name=_s(d, "corp_full_name"),
            follow_users=follow_users,
        )


@dataclass(frozen=True)
class FollowInfo:
    """One member's relation to a customer as batch/get_by_user reports it (tag ids only)."""

    userid: str
    remark: str = ""
    description: str = ""
    createtime: int = 0
    tag_ids: tuple[str, ...] = ()
    remark_corp_name: str = ""
    remark_mobiles: tuple[str, ...] = ()
    oper_userid: str = ""
    add_way: int = 0
    state: str = ""

    @classmethod
    def from_raw(cls, d: Raw) -> FollowInfo:
        return cls(
            userid=_s(d, "userid"),
            remark=_s(d, "remark"),
            description=_s(d, "description"),
            createtime=_i(d, "createtime"),
            tag_ids=_strs(d, "tag_id"),
            remark_corp_name=_s(d, "remark_corp_name"),
            remark_mobiles=_strs(d, "remark_mobiles"),
            oper_userid=_s(d, "oper_userid"),
            add_way=_i(d, "add_way"),
            state=_s(d, "state"),
        )


@dataclass(frozen=True)
class ContactFollow:
    """One (customer, member) pair from batch/get_by_user."""

    contact: ExternalContact
    follow_info: FollowInfo

    @classmethod
    def from_raw(cls, d: Raw) -> ContactFollow:
        return cls(
            ExternalContact.from_raw(d.get("external_contact") or {}),
            FollowInfo.from_raw(d.get("follow_info") or {}),
        )


@dataclass(frozen=True)
class ContactWay:
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
    conclusions: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_raw(cls, d: Raw) -> ContactWay:
        return cls(
            config_id=_s(d, "config_id"),
            type=_i(d, "type"),
            scene=_i(d, "scene"),
            style=_i(d, "style"),
            remark=_s(d, "remark"),
            skip_verify=_b(d, "skip_verify", True),
            state=_s(d, "state"),
            qr_code=_s(d, "qr_code"),
            user=_strs(d, "user"),
            party=tuple(int(p) for p in d.get("party") or ()),
            is_temp=_b(d, "is_temp"),
            expires_in=_i(d, "expires_in"),
            chat_expires_in=_i(d, "chat_expires_in"),
            unionid=_s(d, "unionid"),
            is_exclusive=_b(d, "is_exclusive"),
            conclusions=_frozen(d.get("conclusions")),
        )


@dataclass(frozen=True)
class CorpTag:
    """A corp tag (企业标签) in the catalogue."""

    id: str
    name: str
    create_time: int = 0
    order: int = 0
    deleted: bool = False

    @classmethod
    def from_raw(cls, d: Raw) -> CorpTag:
        return cls(
            _s(d, "id"), _s(d, "name"), _i(d, "create_time"), _i(d, "order"), _b(d, "deleted")
        )


@dataclass(frozen=True)
class TagGroupInfo:
    """A corp tag group with its tags."""

    group_id: str
    group_name: str
    create_time: int = 0
    order: int = 0
    deleted: bool = False
    tags: tuple[CorpTag, ...] = ()

    @classmethod
    def from_raw(cls, d: Raw) -> TagGroupInfo:
        return cls(
            group_id=_s(d, "group_id"),
            group_name=_s(d, "group_name"),
            create_time=_i(d, "create_time"),
            order=_i(d, "order"),
            deleted=_b(d, "deleted"),
            tags=tuple(CorpTag.from_raw(t) for t in d.get("tag") or ()),
        )


@dataclass(frozen=True)
class GroupMsg:
    """A 群发 message as get_groupmsg_list_v2 lists it: who created it, when, with what text."""

    msgid: str
    creator: str
    create_time: int
    create_type: int  # 0 by the corp (admin), 1 by a member
    text: str
    attachments: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_raw(cls, d: Raw) -> GroupMsg:
        text = d.get("text")
        content = _s(text, "content") if isinstance(text, Mapping) else ""
        return cls(
            msgid=_s(d, "msgid"),
            creator=_s(d, "creator"),
            create_time=_i(d, "create_time"),
            create_type=_i(d, "create_type"),
            text=content,
            attachments=tuple(_frozen(a) for a in d.get("attachments") or ()),
        )


@dataclass(frozen=True)
class GroupMsgTask:
    """A member's confirmation state for one 群发 message (0 unsent, 2 sent)."""

    userid: str
    status: int
    send_time: int = 0

    @classmethod
    def from_raw(cls, d: Raw) -> GroupMsgTask:
        return cls(_s(d, "userid"), _i(d, "status"), _i(d, "send_time"))


@dataclass(frozen=True)
class GroupMsgSendResult:
    """Delivery to one customer or group: 0 unsent, 1 sent, 2 not a friend, 3 quota."""

    userid: str
    status: int
    external_userid: str = ""
    chat_id: str = ""
    send_time: int = 0

    @classmethod
    def from_raw(cls, d: Raw) -> GroupMsgSendResult:
        return cls(
            userid=_s(d, "userid"),
            status=_i(d, "status"),
            external_userid=_s(d, "external_userid"),
            chat_id=_s(d, "chat_id"),
            send_time=_i(d, "send_time"),
        )


@dataclass(frozen=True)
class AppMessageResult:
    """What message/send reports: the message id and the recipients it could not reach."""

    msgid: str
    invalid_users: tuple[str, ...] = ()
    invalid_parties: tuple[str, ...] = ()
    invalid_tags: tuple[str, ...] = ()
    response_code: str = ""

    @classmethod
    def from_raw(cls, d: Raw) -> AppMessageResult:
        def split(key: str) -> tuple[str, ...]:
            return tuple(x for x in _s(d, key).split("|") if x)

        return cls(
            msgid=_s(d, "msgid"),
            invalid_users=split("invaliduser"),
            invalid_parties=split("invalidparty"),
            invalid_tags=split("invalidtag"),
            response_code=_s(d, "response_code"),
        )


@dataclass(frozen=True)
class WebIdentity:
    """Who signed in through WeCom's OAuth or web login: a member's userid, or an outsider."""

    userid: str  # empty for someone who is not a member of the corp
    openid: str = ""

    @classmethod
    def from_raw(cls, d: Raw) -> WebIdentity:
        return cls(userid=_s(d, "userid"), openid=_s(d, "openid"))

"""group_invite campaigns: a 群发 inviting customers into the groups of a group live code.

The invitation is a customer 群发 (chat_type single) like group_message, with the group
code's QR code as a link attachment (add_msg_template takes link attachments with any
url; an image needs a media_id uploaded first, doc 92135). Customers already in one of
the code's groups are left out of the audience. Success is measured as joining a group
(`bot.outreach.report`): any group, and a group of this code.
https://developer.work.weixin.qq.com/document/path/92135
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from bot.channels import group_codes
from bot.db.models import Customer, GroupChat, GroupMember
from bot.errors import NotFoundError, ValidationError

EXTERNAL = 2  # group_members.member_type of an external contact
LINK_TITLE = "邀请您加入我们的客户群"
LINK_DESC = "点击打开入群二维码，长按识别即可加入"


@dataclass(frozen=True)
class GroupCode:
    """A group live code as a campaign uses it: its QR code and the groups it leads to."""

    channel_id: int
    name: str
    qr_code: str
    group_chat_ids: tuple[int, ...]  # the known groups among its chat ids


def get_group_code(session: Session, name: str) -> GroupCode:
    """Return the group live code `name`; a clear error when there is none or it is no group code."""
    try:
        channel = group_codes.get_group_code(name, session=session)
    except NotFoundError:
        raise NotFoundError(
            f"没有名为 {name!r} 的群活码，请先用 tagbot channel create {name} --group 群ID 创建"
            f" / no group live code {name!r}"
        ) from None
    if not channel.qr_code:
        raise ValidationError(
            f"群活码 {name!r} 还没有二维码（企业微信尚未创建成功）/ group code {name!r} has no QR code"
        )
    chats = tuple(
        session.scalars(
            select(GroupChat.id).where(GroupChat.chat_id.in_(list(channel.chat_ids or [])))
        )
    )
    return GroupCode(channel.id, channel.name, channel.qr_code, chats)


def invite_attachment(code: GroupCode) -> dict[str, Any]:
    """Return the 群发 attachment that leads to the code's QR code."""
    return {
        "msgtype": "link",
        "link": {
            "title": LINK_TITLE,
            "url": code.qr_code,
            "desc": LINK_DESC,
            "picurl": code.qr_code,
        },
    }


def in_code_groups(code: GroupCode) -> ColumnElement[bool]:
    """Return the condition on group_members for a stay in one of the code's groups.

    A group WeCom opened when the others were full (auto_create_room) is not among the
    chat ids: its joins carry the code's channel instead.
    """
    conditions: list[ColumnElement[bool]] = [GroupMember.channel_id == code.channel_id]
    if code.group_chat_ids:
        conditions.append(GroupMember.group_chat_id.in_(list(code.group_chat_ids)))
    return or_(*conditions)


def already_in(session: Session, code: GroupCode, customer_ids: Sequence[int]) -> set[int]:
    """Return the customers who are in one of the code's groups now.

    A stay is a customer's by its member_userid (as in the tier metrics): a stay recorded
    before the member became a customer counts too.
    """
    out: set[int] = set()
    ordered = sorted(customer_ids)
    for i in range(0, len(ordered), 5000):  # bound each IN list
        out.update(
            session.scalars(
                select(Customer.id)
                .join(GroupMember, GroupMember.member_userid == Customer.external_userid)
                .join(GroupChat, GroupChat.id == GroupMember.group_chat_id)
                .where(
                    Customer.id.in_(ordered[i : i + 5000]),
                    GroupMember.member_type == EXTERNAL,
                    GroupMember.left_at.is_(None),
                    GroupChat.dismissed_at.is_(None),
                    in_code_groups(code),
                )
                .distinct()
            )
        )
    return out

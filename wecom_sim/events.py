"""Build the plaintext XML of 客户联系 callback events, shaped like wecom-api.md §2."""

from __future__ import annotations

import time
from collections.abc import Mapping

FieldValue = str | int | list[str]


def _cdata(value: str) -> str:
    # "]]>" cannot live inside one CDATA section; split it across two
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _element(name: str, value: FieldValue) -> str:
    if isinstance(value, int):
        return f"<{name}>{value}</{name}>"
    if isinstance(value, list):
        items = "".join(f"<Item>{_cdata(item)}</Item>" for item in value)
        return f"<{name}>{items}</{name}>"
    return f"<{name}>{_cdata(value)}</{name}>"


def event_xml(
    corp_id: str,
    event: str,
    change_type: str,
    fields: Mapping[str, FieldValue | None] | None = None,
    *,
    create_time: int | None = None,
) -> str:
    """Return an event's plaintext XML; `fields` (in order) follow ChangeType, None ones skipped."""
    parts = [
        _element("ToUserName", corp_id),
        _element("FromUserName", "sys"),
        _element("CreateTime", int(time.time()) if create_time is None else create_time),
        _element("MsgType", "event"),
        _element("Event", event),
        _element("ChangeType", change_type),
    ]
    parts += [_element(k, v) for k, v in (fields or {}).items() if v is not None]
    return "<xml>" + "".join(parts) + "</xml>"


def add_external_contact_xml(
    corp_id: str,
    userid: str,
    external_userid: str,
    *,
    state: str | None = None,
    welcome_code: str | None = None,
    create_time: int | None = None,
) -> str:
    """Return the add_external_contact event; State/WelcomeCode are left out when None."""
    fields = {
        "UserID": userid,
        "ExternalUserID": external_userid,
        "State": state,
        "WelcomeCode": welcome_code,
    }
    return event_xml(
        corp_id, "change_external_contact", "add_external_contact", fields, create_time=create_time
    )


def edit_external_contact_xml(
    corp_id: str, userid: str, external_userid: str, *, create_time: int | None = None
) -> str:
    """Return the edit_external_contact event (remark or corp tags edited by the member)."""
    fields = {"UserID": userid, "ExternalUserID": external_userid}
    return event_xml(
        corp_id, "change_external_contact", "edit_external_contact", fields, create_time=create_time
    )


def del_external_contact_xml(
    corp_id: str,
    userid: str,
    external_userid: str,
    *,
    source: str | None = None,
    create_time: int | None = None,
) -> str:
    """Return the del_external_contact event (the member deleted the customer)."""
    fields = {"UserID": userid, "ExternalUserID": external_userid, "Source": source}
    return event_xml(
        corp_id, "change_external_contact", "del_external_contact", fields, create_time=create_time
    )


def del_follow_user_xml(
    corp_id: str, userid: str, external_userid: str, *, create_time: int | None = None
) -> str:
    """Return the del_follow_user event (the customer deleted the member)."""
    fields = {"UserID": userid, "ExternalUserID": external_userid}
    return event_xml(
        corp_id, "change_external_contact", "del_follow_user", fields, create_time=create_time
    )


def change_external_tag_xml(
    corp_id: str,
    change_type: str,
    tag_or_group_id: str,
    tag_type: str,
    *,
    create_time: int | None = None,
) -> str:
    """Return a change_external_tag event; change_type is create|update|delete|shuffle."""
    if tag_type not in ("tag", "tag_group"):
        raise ValueError(f"TagType must be tag or tag_group, not {tag_type!r}")
    fields: dict[str, FieldValue | None] = {"Id": tag_or_group_id, "TagType": tag_type}
    return event_xml(corp_id, "change_external_tag", change_type, fields, create_time=create_time)


def change_external_chat_xml(
    corp_id: str,
    change_type: str,
    chat_id: str,
    *,
    update_detail: str | None = None,
    join_scene: int | None = None,
    quit_scene: int | None = None,
    members: list[str] | None = None,
    last_version: str | None = None,
    current_version: str | None = None,
    create_time: int | None = None,
) -> str:
    """Return a change_external_chat event: create, update (with its detail) or dismiss.

    Member changes carry the scene, the count, the changed members and the versions.
    """
    if change_type not in ("create", "update", "dismiss"):
        raise ValueError(f"ChangeType must be create, update or dismiss, not {change_type!r}")
    fields: dict[str, FieldValue | None] = {"ChatId": chat_id, "UpdateDetail": update_detail}
    if members is not None:
        fields |= {
            "JoinScene": join_scene,
            "QuitScene": quit_scene,
            "MemChangeCnt": len(members),
            "MemChangeList": members,
            "LastMemVer": last_version,
            "CurMemVer": current_version,
        }
    return event_xml(corp_id, "change_external_chat", change_type, fields, create_time=create_time)

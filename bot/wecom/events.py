"""Parse decrypted 客户联系 callbacks into CallbackEvent (doc 92130, 96361).

Flat events (all of 客户联系's) are read by the hardened parser; anything else goes
through `wechatpy.enterprise.parse_message`, whose raw fields are all we read (an event
it does not know parses as UnknownMessage, fields intact).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from xml.etree.ElementTree import Element

from wechatpy.enterprise import parse_message

from bot.errors import CallbackError
from bot.wecom.xmlguard import safe_parse

DEDUP_KEY_MAX = 255
_HASH_LEN = 16


@dataclass(frozen=True)
class CallbackEvent:
    """One decrypted callback event; `fields` keeps every raw field as text."""

    event: str
    change_type: str = ""
    create_time: int = 0
    userid: str = ""
    external_userid: str = ""
    state: str = ""
    welcome_code: str = ""
    source: str = ""
    fail_reason: str = ""
    tag_id: str = ""
    tag_type: str = ""
    strategy_id: str = ""
    chat_id: str = ""
    update_detail: str = ""
    fields: Mapping[str, str] = field(default_factory=dict, hash=False, repr=False)

    @property
    def dedup_key(self) -> str:
        """Return a key equal for WeCom's re-deliveries of this event and distinct otherwise."""
        ids = [self.userid or self.tag_id, self.external_userid or self.chat_id]
        head = "|".join([self.event, self.change_type, *ids, str(self.create_time)])
        # Several events can share every id and the same second (WxJava #2314): the
        # hash over all fields tells them apart while re-deliveries stay identical.
        canonical = "\n".join(f"{k}={v}" for k, v in sorted(self.fields.items()))
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:_HASH_LEN]
        return f"{head[: DEDUP_KEY_MAX - _HASH_LEN - 1]}|{digest}"


def _flatten(value: Any) -> str:
    """Render one xmltodict value as text: lists of <Item> become comma-separated."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Item"}:
        items = value["Item"]
        return ",".join(_flatten(i) for i in (items if isinstance(items, list) else [items]))
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def _flat_fields(root: Element) -> dict[str, str] | None:
    """Return the fields of an <xml> of distinct text-only elements, as wechatpy would.

    That is every event WeCom sends about customers and tags; anything else (nested or
    repeated elements, attributes, no MsgType) returns None and goes through wechatpy.
    """
    if root.tag != "xml" or root.attrib or not len(root):
        return None
    fields: dict[str, str] = {}
    for child in root:
        tag = child.tag
        if not isinstance(tag, str) or len(child) or child.attrib or "{" in tag or tag in fields:
            return None
        fields[tag] = (child.text or "").strip()  # xmltodict strips, and empty is None
    msg_type = fields.get("MsgType")
    if msg_type is None or (msg_type.lower() == "event" and "Event" not in fields):
        return None
    return fields


def _wechatpy_fields(xml: str) -> dict[str, str]:
    """Return the fields of any callback XML through wechatpy's parser."""
    try:
        message = parse_message(xml)
    except Exception as exc:
        raise CallbackError(f"callback event: cannot parse ({type(exc).__name__})") from None
    if message is None:
        raise CallbackError("callback event: empty message")
    raw: dict[str, Any] = message._data
    return {str(k): _flatten(v) for k, v in raw.items()}


def parse_event(xml: str) -> CallbackEvent:
    """Parse a decrypted callback XML into a CallbackEvent; unknown events parse generically.

    Parsed once, by the hardened parser, when the XML is flat (every callback a scan
    makes); wechatpy's xmltodict parses the rest, after the hardened parser accepted it.
    """
    root = safe_parse(xml, what="callback event")
    fields = _flat_fields(root)
    if fields is None:
        fields = _wechatpy_fields(xml)
    get = fields.get
    return CallbackEvent(
        event=get("Event", "") or get("MsgType", ""),
        change_type=get("ChangeType", ""),
        create_time=_int(get("CreateTime", "")),
        userid=get("UserID", ""),
        external_userid=get("ExternalUserID", ""),
        state=get("State", ""),
        welcome_code=get("WelcomeCode", ""),
        source=get("Source", ""),
        fail_reason=get("FailReason", ""),
        tag_id=get("Id", ""),
        tag_type=get("TagType", ""),
        strategy_id=get("StrategyId", ""),
        chat_id=get("ChatId", ""),
        update_detail=get("UpdateDetail", ""),
        fields=MappingProxyType(fields),
    )

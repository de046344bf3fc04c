"""Group live codes (群活码): channels whose QR code leads into customer groups.

Each is one 加入群聊 join way (scene 2, QR code) with the channel's `state`, leading to 1–5
customer groups (docs/wecom-groups.md). WeCom reports the state per member in
`groupchat/get`, which is how a join finds its channel and the channel's tags. Create,
update and delete keep the join way in WeCom in line, and check everything they can
before the first WeCom call, so a refusal leaves nothing behind.
https://developer.work.weixin.qq.com/document/path/92229
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from pydantic import ValidationError as PydanticError
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.channels.live_codes import (
    INVALID_CONFIG_ID,
    SHANGHAI,
    check_free,
    check_state,
    forget_join_way,
    set_tags,
)
from bot.channels.lookup import ChannelView, get, view
from bot.config import ChannelSettings
from bot.db import Database
from bot.db.models import Channel, GroupChat
from bot.errors import ValidationError, WeComError
from bot.tags import catalogue
from bot.tags.catalogue import TagPath
from bot.wecom.client import WeComClient
from bot.wecom.types import JoinWaySpec
from bot.wecom_limits import (
    CHAT_ID_PATTERN,
    JOIN_WAY_CHATS_MAX,
    JOIN_WAY_REMARK_MAX,
    JOIN_WAY_ROOM_BASE_NAME_MAX,
    TAG_NAME_MAX,
)

log = logging.getLogger(__name__)

STAFF = "staff"
GROUP = "group"
# What WeCom answers for a chat it cannot lead to (docs/wecom-groups.md): unknown, dismissed,
# not a customer group, malformed.
GONE_CHAT_ERRORS = frozenset({40050, 49008, 90501, 86001})
ROOM_BASE_ID_MAX = 2**31 - 1
_CHAT_ID_RE = re.compile(f"^{CHAT_ID_PATTERN}$")


@dataclass(frozen=True)
class GroupCodeSpec:
    """What an operator asks for: a group live code's name, groups, tags and auto rooms."""

    name: str
    chat_ids: tuple[str, ...]
    tags: tuple[TagPath, ...] = ()
    state: str | None = None
    auto_create_room: bool = False
    room_base_name: str = ""
    room_base_id: int | None = None

    @classmethod
    def from_settings(cls, s: ChannelSettings) -> GroupCodeSpec:
        """Build a spec from a `[[channels]]` entry with `groups`."""
        return cls(
            name=s.name,
            chat_ids=tuple(s.groups),
            tags=tuple(TagPath.parse(t) for t in s.tags),
            state=s.state,
            auto_create_room=s.auto_create_room,
            room_base_name=s.room_base_name,
            room_base_id=s.room_base_id,
        )


def clean_chat_ids(chat_ids: Sequence[str]) -> tuple[str, ...]:
    """Strip and de-duplicate chat ids; refuse none, more than 5, or a malformed one."""
    out = tuple(dict.fromkeys(c.strip() for c in chat_ids if c.strip()))
    n = JOIN_WAY_CHATS_MAX
    if not out:
        raise ValidationError(f"群活码须关联 1–{n} 个客户群 / --group needs 1-{n} chat ids")
    if len(out) > n:
        raise ValidationError(
            f"群活码最多关联 {n} 个客户群（给了 {len(out)} 个）"
            f" / a group code leads to at most {n} groups ({len(out)} given)"
        )
    bad = [c for c in out if not _CHAT_ID_RE.match(c)]
    if bad:
        raise ValidationError(
            f"客户群 ID 格式不对 / malformed chat id: {', '.join(map(repr, bad))}"
            " (字母、数字、_- / letters, digits, _-; see `tagbot groups` or the group sync)"
        )
    return out


def _check_rooms(auto: bool, base_name: str, base_id: int | None) -> tuple[str, int]:
    if not auto and (base_name or base_id is not None):
        raise ValidationError(
            "--room-base-name / --room-base-id 仅在 --auto-create-room 时有效"
            " / only with --auto-create-room"
        )
    if len(base_name) > JOIN_WAY_ROOM_BASE_NAME_MAX:
        n = JOIN_WAY_ROOM_BASE_NAME_MAX
        raise ValidationError(
            f"自动建群群名前缀最多 {n} 字 / room base name: at most {n} characters"
        )
    if base_id is not None and not 0 <= base_id <= ROOM_BASE_ID_MAX:
        raise ValidationError("自动建群起始序号须为非负整数 / room base id must be 0 or more")
    return base_name, base_id or 0


def check_spec(spec: GroupCodeSpec) -> GroupCodeSpec:
    """Refuse locally what WeCom would refuse: name, groups, state, room name and number."""
    name = spec.name.strip()
    if not name or len(name) > TAG_NAME_MAX:
        n = TAG_NAME_MAX
        raise ValidationError(f"渠道名须为 1–{n} 字 / channel name must be 1-{n} characters")
    chat_ids = clean_chat_ids(spec.chat_ids)
    base_name, base_id = _check_rooms(spec.auto_create_room, spec.room_base_name, spec.room_base_id)
    return GroupCodeSpec(
        name=name,
        chat_ids=chat_ids,
        tags=tuple(dict.fromkeys(spec.tags)),
        state=check_state(spec.state) if spec.state else None,
        auto_create_room=spec.auto_create_room,
        room_base_name=base_name,
        room_base_id=base_id if spec.auto_create_room else None,  # idempotent: checks again
    )


def _join_way(spec: GroupCodeSpec, state: str) -> JoinWaySpec:
    """Return the join way to send: always a QR code (scene 2), every field set."""
    try:
        return JoinWaySpec(
            chat_ids=spec.chat_ids,
            scene=2,
            state=state,
            remark=spec.name[:JOIN_WAY_REMARK_MAX],
            auto_create_room=spec.auto_create_room,
            room_base_name=spec.room_base_name,
            room_base_id=spec.room_base_id or 0,
        )
    except PydanticError as exc:  # check_spec refuses all of these first
        raise ValidationError(f"群活码配置不符合企业微信限制 / join way refused: {exc}") from exc


# --- the groups: known from the last group sync, or asked of WeCom ---------------------


def unknown_groups(chat_ids: Sequence[str], *, session: Session) -> list[str] | None:
    """Return the chat ids the group sync does not know as live; None when none was synced."""
    if session.scalar(select(GroupChat.id).limit(1)) is None:
        return None
    live = set(
        session.scalars(
            select(GroupChat.chat_id).where(
                GroupChat.chat_id.in_(list(chat_ids)), GroupChat.dismissed_at.is_(None)
            )
        )
    )
    return [c for c in chat_ids if c not in live]


def _refuse_unknown(unknown: Sequence[str]) -> None:
    if unknown:
        raise ValidationError(
            f"客户群不存在或已解散 / customer groups unknown or dismissed: {', '.join(unknown)}"
            " — 请先同步客户群 / sync the groups first, then check the chat ids"
        )


def check_groups_known(chat_ids: Sequence[str], *, db: Database, wecom: WeComClient) -> None:
    """Refuse groups that are unknown or dismissed, before anything is made in WeCom.

    Against the stored groups when a group sync has run (no WeCom call); otherwise each
    group is read from WeCom (`groupchat/get`, which changes nothing there).
    """
    with db.read() as session:
        unknown = unknown_groups(chat_ids, session=session)
    if unknown is not None:
        _refuse_unknown(unknown)
        return
    gone = []
    for chat_id in chat_ids:
        try:
            wecom.get_group_chat(chat_id)
        except WeComError as exc:
            if exc.errcode not in GONE_CHAT_ERRORS:
                raise
            gone.append(chat_id)
    _refuse_unknown(gone)


# --- writes ----------------------------------------------------------------------------


def _add_way(wecom: WeComClient, way: JoinWaySpec) -> tuple[str, str]:
    """Create the join way and read its QR code (add answers the config_id only)."""
    config_id = wecom.add_join_way(way)
    try:
        return config_id, wecom.get_join_way(config_id).qr_code
    except Exception:
        forget_join_way(wecom, config_id)
        raise


def _store(channel: Channel, spec: GroupCodeSpec) -> None:
    channel.chat_ids = list(spec.chat_ids)
    channel.auto_create_room = spec.auto_create_room
    channel.room_base_name = spec.room_base_name
    channel.room_base_id = spec.room_base_id or 0
    set_tags(channel, spec.tags)


def create(
    spec: GroupCodeSpec,
    *,
    db: Database,
    wecom: WeComClient,
    source: str = "cli",
    tz: ZoneInfo = SHANGHAI,
) -> ChannelView:
    """Check, create the join way (and any missing tags) in WeCom, then store the channel."""
    spec = check_spec(spec)
    with db.read() as session:
        state = check_free(spec.name, spec.state, session=session)
    way = _join_way(spec, state)
    check_groups_known(spec.chat_ids, db=db, wecom=wecom)
    config_id, qr_code = _add_way(wecom, way)
    try:
        catalogue.ensure(db=db, wecom=wecom, paths=spec.tags)
        with db.write() as session:
            check_free(spec.name, state, session=session)  # raced?
            channel = Channel(
                name=spec.name,
                state=state,
                config_id=config_id,
                qr_code=qr_code,
                kind=GROUP,
                source=source,
                scans=0,
                daily_cap=None,
                welcome_text="",
                welcome_attachments=[],
            )
            session.add(channel)
            _store(channel, spec)
            session.flush()
            log.info("group code %s created: state=%s config_id=%s", spec.name, state, config_id)
            return view(channel, session=session, tz=tz)
    except Exception:
        forget_join_way(wecom, config_id)  # don't leave a join way nobody knows about
        raise


def current_spec(channel: Channel) -> GroupCodeSpec:
    """Return a group channel's stored configuration as a spec."""
    return GroupCodeSpec(
        name=channel.name,
        chat_ids=tuple(channel.chat_ids or ()),
        tags=tuple(TagPath(t.group_name, t.tag_name) for t in channel.tags),
        state=channel.state,
        auto_create_room=channel.auto_create_room,
        room_base_name=channel.room_base_name,
        room_base_id=channel.room_base_id if channel.auto_create_room else None,
    )


def get_group_code(name: str, *, session: Session) -> Channel:
    """Return the group channel of this name; refuse a staff live code."""
    channel = get(name, session=session)
    if channel.kind != GROUP:
        raise ValidationError(
            f"渠道 {name!r} 是员工活码，不是群活码 / {name!r} is a staff live code, not a group code"
        )
    return channel


def update(
    name: str,
    *,
    db: Database,
    wecom: WeComClient,
    chat_ids: Sequence[str] | None = None,
    tags: Sequence[TagPath] | None = None,
    auto_create_room: bool | None = None,
    room_base_name: str | None = None,
    room_base_id: int | None = None,
    tz: ZoneInfo = SHANGHAI,
) -> ChannelView:
    """Change a group code; only what is given changes. The QR code stays the same.

    WeCom's update_join_way overwrites every field, so the whole configuration is sent.
    """
    with db.read() as session:
        channel = get_group_code(name, session=session)
        old = current_spec(channel)
        config_id = channel.config_id
    auto = old.auto_create_room if auto_create_room is None else auto_create_room
    if auto:
        base_name = old.room_base_name if room_base_name is None else room_base_name
        base_id = old.room_base_id if room_base_id is None else room_base_id
    else:  # auto rooms off: their settings go; giving them with it off is refused
        _check_rooms(False, room_base_name or "", room_base_id)
        base_name, base_id = "", None
    new = GroupCodeSpec(
        name=old.name,
        chat_ids=old.chat_ids if chat_ids is None else tuple(chat_ids),
        tags=old.tags if tags is None else tuple(tags),
        state=old.state,
        auto_create_room=auto,
        room_base_name=base_name,
        room_base_id=base_id,
    )
    new = check_spec(new)
    way = _join_way(new, old.state or "")
    if new.chat_ids != old.chat_ids:
        check_groups_known(new.chat_ids, db=db, wecom=wecom)
    if tags is not None:
        catalogue.ensure(db=db, wecom=wecom, paths=new.tags)
    way_changed = (
        new.chat_ids,
        new.auto_create_room,
        new.room_base_name,
        new.room_base_id or 0,
    ) != (old.chat_ids, old.auto_create_room, old.room_base_name, old.room_base_id or 0)
    if way_changed and config_id:
        wecom.update_join_way(config_id, way)
    with db.write() as session:
        channel = get_group_code(name, session=session)
        _store(channel, new)
        session.flush()
        return view(channel, session=session, tz=tz)


def reconcile(
    spec: GroupCodeSpec, *, db: Database, wecom: WeComClient, tz: ZoneInfo = SHANGHAI
) -> tuple[str, ChannelView]:
    """Make one configured group code exist in WeCom as declared; return (action, channel)."""
    spec = check_spec(spec)
    with db.read() as session:
        existing = session.scalars(select(Channel).where(Channel.name == spec.name)).first()
        found = None if existing is None else (existing.kind, existing.state, existing.config_id)
    if found is None:
        return "created", create(spec, db=db, wecom=wecom, source="config", tz=tz)
    kind, state, config_id = found
    if kind != GROUP:
        raise ValidationError(
            f"渠道 {spec.name!r} 已是员工活码，不能改为群活码 / a staff live code cannot become a"
            " group code: delete it first"
        )
    if spec.state and spec.state != state:
        raise ValidationError(
            f"渠道 {spec.name!r} 的 state 不能从 {state!r} 改为 {spec.state!r}"
            " / a channel's state cannot change"
        )
    channel = update(
        spec.name,
        db=db,
        wecom=wecom,
        chat_ids=spec.chat_ids,
        tags=spec.tags,
        auto_create_room=spec.auto_create_room,
        room_base_name=spec.room_base_name,
        room_base_id=spec.room_base_id if spec.auto_create_room else None,
        tz=tz,
    )
    if config_id:
        try:
            way = wecom.get_join_way(config_id)
        except WeComError as exc:
            if exc.errcode != INVALID_CONFIG_ID:
                raise
            log.warning("group code %s: join way gone from WeCom; re-creating", spec.name)
            return "recreated", _recreate(spec.name, db=db, wecom=wecom, tz=tz)
        # The state only: WeCom appends the groups it opened itself to chat_id_list.
        if way.state != state:
            with db.read() as session:
                current = current_spec(get_group_code(spec.name, session=session))
            wecom.update_join_way(config_id, _join_way(current, state))
    return "checked", channel


def _recreate(name: str, *, db: Database, wecom: WeComClient, tz: ZoneInfo) -> ChannelView:
    with db.read() as session:
        channel = get_group_code(name, session=session)
        spec, state = current_spec(channel), channel.state
    config_id, qr_code = _add_way(wecom, _join_way(spec, state))
    try:
        with db.write() as session:
            channel = get_group_code(name, session=session)
            channel.config_id, channel.qr_code = config_id, qr_code
            session.flush()
            return view(channel, session=session, tz=tz)
    except Exception:
        forget_join_way(wecom, config_id)
        raise

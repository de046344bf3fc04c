"""Channel live codes (渠道活码): WeCom contact ways with a state, tags and a welcome.

Each channel is one 联系我 config (scene 2, QR code). Its `state` comes back on every add
event, which is how a scan finds its channel. Creating, changing and deleting a channel
keeps its contact way in WeCom in line. https://developer.work.weixin.qq.com/document/path/92228
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, select
from sqlalchemy import update as update_
from sqlalchemy.orm import Session

from bot.channels import welcome
from bot.channels.lookup import (
    BACKUP,
    PRIMARY,
    ChannelView,
    adds_today,
    generate_state,
    get,
    get_by_state,
    members,
    today_in,
    view,
)
from bot.channels.rotation import answering, mark_paused
from bot.config import ChannelSettings
from bot.db import Database
from bot.db.models import Channel, ChannelStaff, ChannelTag, Staff
from bot.errors import ValidationError, WeComError
from bot.members import get_or_create_staff
from bot.tags import catalogue
from bot.tags.catalogue import TagPath
from bot.wecom.client import WeComClient
from bot.wecom_limits import (
    CONTACT_WAY_REMARK_MAX,
    CONTACT_WAY_STATE_MAX,
    CONTACT_WAY_USERS_MAX,
    TAG_NAME_MAX,
)

log = logging.getLogger(__name__)

INVALID_CONFIG_ID = 41044
_STATE_RE = re.compile(rf"^[A-Za-z0-9_\-.]{{1,{CONTACT_WAY_STATE_MAX}}}$")
_UNSET: Any = object()
SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class ChannelSpec:
    """What an operator asks for: everything needed to create a channel."""

    name: str
    staff: tuple[str, ...]
    tags: tuple[TagPath, ...] = ()
    welcome: str = ""
    state: str | None = None
    daily_cap: int | None = None
    backup: tuple[str, ...] = ()
    attachments: tuple[dict[str, Any], ...] = ()
    skip_verify: bool = True

    @classmethod
    def from_settings(cls, s: ChannelSettings) -> ChannelSpec:
        """Build a spec from a `[[channels]]` entry of the config."""
        return cls(
            name=s.name,
            staff=tuple(s.staff),
            tags=tuple(TagPath.parse(t) for t in s.tags),
            welcome=s.welcome,
            state=s.state,
            daily_cap=s.daily_cap,
            backup=tuple(s.backup),
            attachments=tuple(welcome.attachment_from_settings(a) for a in s.attachments),
        )


# --- validation ------------------------------------------------------------------------


def _clean_users(users: Sequence[str], what: str) -> tuple[str, ...]:
    out: list[str] = []
    for u in users:
        u = u.strip()
        if u and u not in out:
            out.append(u)
    if len(out) > CONTACT_WAY_USERS_MAX:
        n = CONTACT_WAY_USERS_MAX
        raise ValidationError(f"{what}最多 {n} 人 / at most {n} {what}")
    return tuple(out)


def check_state(state: str) -> str:
    """Refuse a state WeCom would refuse (over 30 characters) or that is awkward in URLs."""
    if not _STATE_RE.match(state):
        raise ValidationError(
            f"state {state!r} 须为 1–{CONTACT_WAY_STATE_MAX} 个字母、数字、_-. / "
            f"must be 1-{CONTACT_WAY_STATE_MAX} letters, digits, _-."
        )
    return state


def check_spec(spec: ChannelSpec) -> ChannelSpec:
    name = spec.name.strip()
    if not name or len(name) > TAG_NAME_MAX:
        n = TAG_NAME_MAX
        raise ValidationError(f"渠道名须为 1–{n} 字 / channel name must be 1-{n} characters")
    staff = _clean_users(spec.staff, "接待成员")
    if not staff:
        raise ValidationError("至少需要一个接待成员 / --staff needs at least one userid")
    backup = tuple(u for u in _clean_users(spec.backup, "备用成员") if u not in staff)
    if spec.daily_cap is not None and spec.daily_cap < 1:
        raise ValidationError("每日上限须为正整数 / --daily-cap must be at least 1")
    welcome.check_template(spec.welcome, spec.attachments)
    return ChannelSpec(
        name=name,
        staff=staff,
        tags=tuple(dict.fromkeys(spec.tags)),
        welcome=spec.welcome,
        state=check_state(spec.state) if spec.state else None,
        daily_cap=spec.daily_cap,
        backup=backup,
        attachments=spec.attachments,
        skip_verify=spec.skip_verify,
    )


def unknown_staff(userids: Sequence[str], *, session: Session) -> list[str] | None:
    """Return the members the last `tagbot sync` did not list; None when none was ever synced.

    Members come from `get_follow_user_list` (those with 客户联系), stored by the sync; a
    contact way for a member WeCom does not know fails with 60111.
    """
    active = {
        userid.lower(): is_active
        for userid, is_active in session.execute(select(Staff.userid, Staff.active))
    }
    if not active:
        return None
    return [u for u in userids if not active.get(u.lower())]


def check_staff_known(userids: Sequence[str], *, session: Session) -> None:
    """Refuse members the last `tagbot sync` did not list, before anything is made in WeCom."""
    unknown = unknown_staff(userids, session=session)
    if unknown is None:
        raise ValidationError(
            "还没有同步过成员，请先运行 `tagbot sync` / no staff known yet: run `tagbot sync`"
            " first, then `tagbot staff list`"
        )
    if unknown:
        raise ValidationError(
            f"成员不在最近一次同步的客户联系成员中 / staff unknown to WeCom's last sync:"
            f" {', '.join(unknown)} — 请运行 / run `tagbot sync`, then `tagbot staff list`"
        )


def way_type(staff: Sequence[str], backup: Sequence[str]) -> int:
    """Return the contact way type: 1 for one member with no backups, else 2 (multi)."""
    return 1 if len(staff) == 1 and not backup else 2


# --- writes ----------------------------------------------------------------------------


def _set_members(
    channel: Channel, staff: Sequence[str], backup: Sequence[str], *, session: Session
) -> None:
    old = {m.staff.userid: m for m in channel.staff}
    members: list[ChannelStaff] = []
    for role, users in ((PRIMARY, staff), (BACKUP, backup)):
        for userid in users:
            member = old.get(userid)
            if member is None:
                person = get_or_create_staff(userid, session=session)
                member = ChannelStaff(staff_id=person.id, staff=person)
            member.role = role
            member.position = len(members)
            members.append(member)
    channel.staff = members


def set_tags(channel: Channel, tags: Sequence[TagPath]) -> None:
    """Give the channel these tags, keeping the rows of those it already has."""
    keep = {(t.group_name, t.tag_name): t for t in channel.tags}
    channel.tags = [
        keep.get((p.group, p.name)) or ChannelTag(group_name=p.group, tag_name=p.name) for p in tags
    ]


def check_free(name: str, state: str | None, *, session: Session) -> str:
    """Refuse a taken name or state; return the state to use (generated when not given).

    Staff and group live codes alike: both kinds share the channels' names and states.
    """
    if session.scalars(select(Channel.id).where(Channel.name == name)).first():
        raise ValidationError(f"渠道 {name!r} 已存在 / channel already exists")
    state = state or generate_state(session=session)
    if get_by_state(state, session=session) is not None:
        raise ValidationError(f"state {state!r} 已被其他渠道使用 / state already in use")
    return state


def _add_way(
    *,
    wecom: WeComClient,
    name: str,
    state: str,
    staff: Sequence[str],
    backup: Sequence[str],
    skip_verify: bool,
) -> tuple[str, str]:
    """Create a contact way in WeCom; return its (config_id, qr_code)."""
    return wecom.add_contact_way(
        type=way_type(staff, backup),
        scene=2,
        user=list(staff),
        remark=name[:CONTACT_WAY_REMARK_MAX],
        skip_verify=skip_verify,
        state=state,
    )


def _store_new(
    spec: ChannelSpec, state: str, way: tuple[str, str], *, session: Session, source: str
) -> Channel:
    channel = Channel(
        name=spec.name,
        state=state,
        config_id=way[0],
        qr_code=way[1],
        welcome_text=spec.welcome,
        welcome_attachments=list(spec.attachments),
        daily_cap=spec.daily_cap,
        skip_verify=spec.skip_verify,
        source=source,
        scans=0,
    )
    session.add(channel)
    _set_members(channel, spec.staff, spec.backup, session=session)
    set_tags(channel, spec.tags)
    session.flush()
    log.info("channel %s created: state=%s config_id=%s", spec.name, state, way[0])
    return channel


def create(
    spec: ChannelSpec,
    *,
    db: Database,
    wecom: WeComClient,
    source: str = "cli",
    tz: ZoneInfo = SHANGHAI,
) -> ChannelView:
    """Create the live code in WeCom (and any missing tags), then store the channel.

    Plan, call WeCom, apply: each step in a short transaction of its own, since on
    SQLite a write transaction held across WeCom calls would hold up every callback's
    acknowledgement meanwhile.
    """
    spec = check_spec(spec)
    with db.read() as session:
        state = check_free(spec.name, spec.state, session=session)
    # The contact way first: WeCom checks the staff there (60111), and a refusal must not
    # leave the channel's tags made in WeCom for a channel that does not exist.
    way = _add_way(
        wecom=wecom,
        name=spec.name,
        state=state,
        staff=spec.staff,
        backup=spec.backup,
        skip_verify=spec.skip_verify,
    )
    try:
        catalogue.ensure(db=db, wecom=wecom, paths=spec.tags)
        with db.write() as session:
            check_free(spec.name, state, session=session)  # raced?
            channel = _store_new(spec, state, way, session=session, source=source)
            return view(channel, session=session, tz=tz)
    except Exception:
        _forget_way(wecom, way[0])  # don't leave a live code nobody knows about
        raise


def _forget_way(wecom: WeComClient, config_id: str) -> None:
    try:
        wecom.del_contact_way(config_id)
    except WeComError as exc:
        if exc.errcode != INVALID_CONFIG_ID:
            log.warning("could not delete contact way %s: %s", config_id, exc)


def forget_join_way(wecom: WeComClient, config_id: str) -> None:
    """Delete a group code's join way, tolerating one WeCom no longer has."""
    try:
        wecom.del_join_way(config_id)
    except WeComError as exc:
        if exc.errcode != INVALID_CONFIG_ID:
            log.warning("could not delete join way %s: %s", config_id, exc)


def refuse_group_code(channel: Channel) -> None:
    """Refuse staff-code changes (members, welcome, cap) on a group code."""
    if channel.kind == "group":
        raise ValidationError(
            f"渠道 {channel.name!r} 是群活码：可改客户群、标签与自动建群 / {channel.name!r} is a"
            " group code: change its --group, --tag or auto rooms"
        )


def update(
    name: str,
    *,
    db: Database,
    wecom: WeComClient,
    staff: Sequence[str] | None = None,
    backup: Sequence[str] | None = None,
    tags: Sequence[TagPath] | None = None,
    welcome_text: str | None = None,
    attachments: Sequence[dict[str, Any]] | None = None,
    daily_cap: int | None = _UNSET,
    skip_verify: bool | None = None,
    tz: ZoneInfo = SHANGHAI,
) -> tuple[ChannelView, bool]:
    """Change a channel; only what is given changes. Return (channel, new_qr_code).

    skip_verify is sent to WeCom only when asked for: wechatpy's helper would reset it.
    A switch between one member and several needs a new contact way (WeCom cannot
    change `type`), which means a new QR code; the state stays. Like `create`: plan,
    call WeCom, then store, never calling WeCom inside a write transaction.
    """
    with db.read() as session:
        channel = get(name, session=session)
        refuse_group_code(channel)
        old_staff = [m.staff.userid for m in members(channel, PRIMARY)]
        old_backup = [m.staff.userid for m in members(channel, BACKUP)]
        new_staff = list(_clean_users(staff, "接待成员")) if staff is not None else old_staff
        if not new_staff:
            raise ValidationError("至少需要一个接待成员 / at least one staff member")
        new_backup = [
            u
            for u in (_clean_users(backup, "备用成员") if backup is not None else old_backup)
            if u not in new_staff
        ]
        if daily_cap is not _UNSET and daily_cap is not None and daily_cap < 1:
            raise ValidationError("每日上限须为正整数 / --daily-cap must be at least 1")
        cap = channel.daily_cap if daily_cap is _UNSET else daily_cap
        template: tuple[str, list[dict[str, Any]]] | None = None
        if welcome_text is not None or attachments is not None:
            text = channel.welcome_text if welcome_text is None else welcome_text
            atts = list(channel.welcome_attachments if attachments is None else attachments)
            welcome.check_template(text, atts)
            template = (text, atts)
        members_changed = (new_staff, new_backup) != (old_staff, old_backup)
        capped: set[str] = set()
        if members_changed and cap:
            counts = adds_today(channel, session=session, tz=tz)
            capped = {u for u in new_staff if counts.get(u, 0) >= cap}
        config_id, state, was_skip_verify = channel.config_id, channel.state, channel.skip_verify
    today = today_in(tz)
    tag_paths = list(dict.fromkeys(tags)) if tags is not None else None
    if tag_paths is not None:
        catalogue.ensure(db=db, wecom=wecom, paths=tag_paths)
    new_way: tuple[str, str] | None = None
    if members_changed and way_type(new_staff, new_backup) != way_type(old_staff, old_backup):
        new_way = _add_way(
            wecom=wecom,
            name=name,
            state=state,
            staff=new_staff,
            backup=new_backup,
            skip_verify=was_skip_verify if skip_verify is None else skip_verify,
        )
    else:
        changes: dict[str, Any] = {}
        if members_changed:
            changes["user"] = answering(new_staff, new_backup, capped)
        if skip_verify is not None and skip_verify != was_skip_verify:
            changes["skip_verify"] = skip_verify
        if changes and config_id:
            wecom.update_contact_way(config_id, **changes)
    try:
        with db.write() as session:
            channel = get(name, session=session)
            if daily_cap is not _UNSET:
                channel.daily_cap = daily_cap
            if template is not None:
                channel.welcome_text, channel.welcome_attachments = template
            if tag_paths is not None:
                set_tags(channel, tag_paths)
            if members_changed:
                _set_members(channel, new_staff, new_backup, session=session)
                for m in channel.staff:
                    m.paused_on = None  # recomputed below against the new line-up
            if new_way is not None:
                channel.config_id, channel.qr_code = new_way
            if skip_verify is not None:
                channel.skip_verify = skip_verify
            if members_changed and channel.daily_cap:
                mark_paused(channel, capped, today)
            session.flush()
            result = view(channel, session=session, tz=tz)
    except Exception:
        if new_way is not None:
            _forget_way(wecom, new_way[0])
        raise
    if new_way is not None and config_id:
        _forget_way(wecom, config_id)
    return result, new_way is not None


def recreate_way(name: str, *, db: Database, wecom: WeComClient) -> None:
    """Give the channel a new contact way (same state), dropping the old one if it lives."""
    with db.read() as session:
        channel = get(name, session=session)
        refuse_group_code(channel)
        staff = [m.staff.userid for m in members(channel, PRIMARY)]
        backup = [m.staff.userid for m in members(channel, BACKUP)]
        state, old, skip = channel.state, channel.config_id, channel.skip_verify
    way = _add_way(
        wecom=wecom, name=name, state=state, staff=staff, backup=backup, skip_verify=skip
    )
    try:
        with db.write() as session:
            channel = get(name, session=session)
            channel.config_id, channel.qr_code = way
    except Exception:
        _forget_way(wecom, way[0])
        raise
    if old:
        _forget_way(wecom, old)


def delete(name: str, *, db: Database, wecom: WeComClient) -> None:
    """Delete the live code in WeCom and the channel; relations keep their history."""
    with db.read() as session:
        channel = get(name, session=session)
        config_id, kind = channel.config_id, channel.kind
    if config_id:  # first: a live code we no longer know would leak
        if kind == "group":
            forget_join_way(wecom, config_id)
        else:
            _forget_way(wecom, config_id)
    with db.write() as session:
        session.delete(get(name, session=session))


_CH = cast(Table, Channel.__table__)
# Built once: runs on every scan, and a prebuilt statement skips SQLAlchemy's per-call work.
_COUNT_SCAN = update_(_CH).where(_CH.c.id == bindparam("channel_id")).values(scans=_CH.c.scans + 1)


def record_scan(channel_id: int, *, session: Session) -> None:
    """Count one processed add event on the channel."""
    session.execute(_COUNT_SCAN, {"channel_id": channel_id})

"""Channels declared in config (`[[channels]]`): made to exist in WeCom as declared."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.channels import group_codes
from bot.channels.live_codes import (
    INVALID_CONFIG_ID,
    SHANGHAI,
    ChannelSpec,
    check_spec,
    create,
    recreate_way,
    unknown_staff,
    update,
)
from bot.channels.lookup import ChannelView, get, view
from bot.config import ChannelSettings
from bot.db import Database
from bot.db.models import Channel
from bot.errors import ValidationError, WeComError
from bot.wecom.client import WeComClient

log = logging.getLogger(__name__)


def reconcile_one(
    spec: ChannelSpec, *, db: Database, wecom: WeComClient, tz: ZoneInfo = SHANGHAI
) -> tuple[str, ChannelView]:
    """Make one configured channel exist in WeCom as declared; return (action, channel).

    Each step is a short transaction of its own around the WeCom calls; a failure part
    way leaves what is done done, and the next run carries on from there.
    """
    spec = check_spec(spec)
    with db.read() as session:
        existing = session.scalars(select(Channel.state).where(Channel.name == spec.name)).first()
    if existing is None:
        return "created", create(spec, db=db, wecom=wecom, source="config", tz=tz)
    with db.read() as session:
        kind = session.scalars(select(Channel.kind).where(Channel.name == spec.name)).one()
    if kind == group_codes.GROUP:
        raise ValidationError(
            f"渠道 {spec.name!r} 是群活码，不能改为员工活码 / a group code cannot become a staff"
            " live code: delete it first"
        )
    if spec.state and spec.state != existing:
        raise ValidationError(
            f"渠道 {spec.name!r} 的 state 不能从 {existing!r} 改为 {spec.state!r}"
            " / a channel's state cannot change"
        )
    channel, _ = update(
        spec.name,
        db=db,
        wecom=wecom,
        staff=spec.staff,
        backup=spec.backup,
        tags=spec.tags,
        welcome_text=spec.welcome,
        attachments=list(spec.attachments),
        daily_cap=spec.daily_cap,
        tz=tz,
    )
    if channel.config_id:
        try:
            way = wecom.get_contact_way(channel.config_id)
        except WeComError as exc:
            if exc.errcode != INVALID_CONFIG_ID:
                raise
            log.warning("channel %s: contact way gone from WeCom; re-creating", spec.name)
            recreate_way(spec.name, db=db, wecom=wecom)
            with db.read() as session:
                return "recreated", view(get(spec.name, session=session), session=session, tz=tz)
        if way.state != channel.state:
            wecom.update_contact_way(channel.config_id, state=channel.state)
    return "checked", channel


def reconcile_config_channels(
    specs: Sequence[ChannelSettings],
    *,
    db: Database,
    wecom: WeComClient,
    tz: ZoneInfo = SHANGHAI,
) -> dict[str, str]:
    """Reconcile every `[[channels]]` entry, each on its own; name → action.

    Channels once declared in config and since removed are kept (deleting a live code
    kills QR codes already printed); `tagbot channel delete` removes them on purpose.
    """
    results: dict[str, str] = {}
    for s in specs:
        try:
            if s.is_group:
                spec = group_codes.GroupCodeSpec.from_settings(s)
                action, _ = group_codes.reconcile(spec, db=db, wecom=wecom, tz=tz)
            else:
                staff = ChannelSpec.from_settings(s)
                action, _ = reconcile_one(staff, db=db, wecom=wecom, tz=tz)
        except Exception as exc:
            log.exception("channel %s from config could not be reconciled", s.name)
            action = f"failed: {exc}"
        results[s.name] = action
    return results


def staff_problems(specs: Sequence[ChannelSettings], *, session: Session) -> list[str] | None:
    """Name, by key, configured staff the last sync did not list (None: never synced)."""
    problems = []
    for i, s in enumerate(specs):
        if s.is_group:
            continue
        for key, users in (("staff", s.staff), ("backup", s.backup)):
            unknown = unknown_staff(users, session=session)
            if unknown is None:
                return None
            if unknown:
                problems.append(
                    f"channels[{i}].{key}: {', '.join(unknown)} not among WeCom's staff at the"
                    " last sync (成员不存在) — run `tagbot sync`, then `tagbot staff list`"
                )
    return problems


def group_problems(specs: Sequence[ChannelSettings], *, session: Session) -> list[str] | None:
    """Name, by key, configured groups the last group sync did not list (None: never synced)."""
    problems = []
    for i, s in enumerate(specs):
        if not s.is_group:
            continue
        unknown = group_codes.unknown_groups(s.groups, session=session)
        if unknown is None:
            return None
        if unknown:
            problems.append(
                f"channels[{i}].groups: {', '.join(unknown)} unknown or dismissed at the last"
                " group sync (客户群不存在或已解散)"
            )
    return problems

"""Channels declared in config (`[[channels]]`): made to exist in WeCom as declared."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.channels.live_codes import (
    INVALID_CONFIG_ID,
    SHANGHAI,
    ChannelSpec,
    begin_with_wecom,
    check_spec,
    create,
    create_channel,
    replace_way,
    update,
)
from bot.config import ChannelSettings
from bot.db import Database
from bot.db.models import Channel
from bot.errors import ValidationError, WeComError
from bot.wecom.client import WeComClient

log = logging.getLogger(__name__)


def reconcile_one(
    spec: ChannelSpec, *, session: Session, wecom: WeComClient, tz: ZoneInfo = SHANGHAI
) -> tuple[str, Channel]:
    """Make one configured channel exist in WeCom as declared; return (action, channel)."""
    spec = check_spec(spec)
    existing = session.scalars(select(Channel).where(Channel.name == spec.name)).one_or_none()
    if existing is None:
        return "created", create(spec, session=session, wecom=wecom, source="config")
    if spec.state and spec.state != existing.state:
        raise ValidationError(
            f"渠道 {spec.name!r} 的 state 不能从 {existing.state!r} 改为 {spec.state!r}"
            " / a channel's state cannot change"
        )
    channel, _ = update(
        spec.name,
        session=session,
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
            replace_way(channel, wecom=wecom, skip_verify=None)
            session.flush()
            return "recreated", channel
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
    """Reconcile every `[[channels]]` entry, each in its own transaction; name → action.

    Channels once declared in config and since removed are kept (deleting a live code
    kills QR codes already printed); `tagbot channel delete` removes them on purpose.
    """
    results: dict[str, str] = {}
    for s in specs:
        try:
            spec = ChannelSpec.from_settings(s)
            with db.read() as session:
                exists = session.scalars(select(Channel.id).where(Channel.name == s.name)).first()
            if not exists:
                create_channel(spec, db=db, wecom=wecom, source="config", tz=tz)
                action = "created"
            else:
                with begin_with_wecom(db, wecom) as session:
                    action, _ = reconcile_one(spec, session=session, wecom=wecom, tz=tz)
        except Exception as exc:
            log.exception("channel %s from config could not be reconciled", s.name)
            action = f"failed: {exc}"
        results[s.name] = action
    return results

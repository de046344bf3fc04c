"""Admin API for channels and the callback inbox: /api/channels, /api/inbox (Bearer token)."""

from __future__ import annotations

from typing import Any

import pydantic
from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from bot.callbacks import inbox
from bot.channels import group_codes, live_codes, lookup, welcome
from bot.config import AttachmentSettings
from bot.errors import ValidationError
from bot.states import InboxStatus
from bot.tags.catalogue import TagPath
from handlers.auth import require_admin
from handlers.context import runtime
from handlers.jsonbody import json_body

bp = Blueprint("channels_api", __name__, url_prefix="/api")


def _body() -> dict[str, Any]:
    data = json_body(current_app.config["MAX_CONTENT_LENGTH"])
    if not isinstance(data, dict):
        raise ValidationError("请求体须为 JSON 对象 / body must be a JSON object")
    return data


def _strings(data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(f"{key} 须为字符串列表 / {key} must be a list of strings")
    return tuple(v.strip() for v in value if v.strip())


def _attachments(data: dict[str, Any]) -> list[dict[str, Any]]:
    raw = data.get("attachments", [])
    if not isinstance(raw, list):
        raise ValidationError("attachments 须为列表 / attachments must be a list")
    try:
        return [welcome.attachment_from_settings(AttachmentSettings(**a)) for a in raw]
    except (TypeError, pydantic.ValidationError) as exc:
        raise ValidationError(f"附件格式不对 / bad attachment: {exc}") from None


def _cap(data: dict[str, Any]) -> int | None:
    cap = data.get("daily_cap")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool)):
        raise ValidationError("daily_cap 须为整数 / daily_cap must be an integer")
    return cap


def _room_base_id(data: dict[str, Any]) -> int | None:
    value = data.get("room_base_id")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValidationError("room_base_id 须为整数 / room_base_id must be an integer")
    return value


_STAFF_ONLY = ("staff", "backup", "welcome", "attachments", "daily_cap", "skip_verify")
_GROUP_ONLY = ("groups", "auto_create_room", "room_base_name", "room_base_id")


def _create_group_code(data: dict[str, Any]) -> ResponseReturnValue:
    given = [k for k in _STAFF_ONLY if data.get(k) not in (None, "", [])]
    if given:
        raise ValidationError(
            f"群活码没有接待成员、欢迎语、每日上限 / a group code takes no {', '.join(given)}"
        )
    rt = runtime()
    spec = group_codes.GroupCodeSpec(
        name=str(data.get("name", "")),
        chat_ids=_strings(data, "groups"),
        tags=tuple(TagPath.parse(t) for t in _strings(data, "tags")),
        state=data.get("state") or None,
        auto_create_room=bool(data.get("auto_create_room", False)),
        room_base_name=str(data.get("room_base_name") or ""),
        room_base_id=_room_base_id(data),
    )
    view = group_codes.create(spec, db=rt.db, wecom=rt.wecom, source="api", tz=rt.settings.tz)
    return jsonify(view.to_json()), 201


def _update_group_code(name: str, data: dict[str, Any]) -> ResponseReturnValue:
    given = [k for k in _STAFF_ONLY if k in data]
    if given:
        raise ValidationError(
            f"群活码没有接待成员、欢迎语、每日上限 / a group code takes no {', '.join(given)}"
        )
    rt = runtime()
    auto = data.get("auto_create_room")
    view = group_codes.update(
        name,
        db=rt.db,
        wecom=rt.wecom,
        chat_ids=(_strings(data, "groups")) if "groups" in data else None,
        tags=[TagPath.parse(t) for t in _strings(data, "tags")] if "tags" in data else None,
        auto_create_room=None if auto is None else bool(auto),
        room_base_name=None if data.get("room_base_name") is None else str(data["room_base_name"]),
        room_base_id=_room_base_id(data),
        tz=rt.settings.tz,
    )
    return jsonify({**view.to_json(), "qr_code_changed": False})


@bp.get("/channels")
@require_admin
def list_channels() -> ResponseReturnValue:
    """List channels with their counts."""
    rt = runtime()
    with rt.db.read() as session:
        return jsonify(
            channels=[
                lookup.view(c, session=session, tz=rt.settings.tz).to_json()
                for c in lookup.list_all(session=session)
            ]
        )


@bp.post("/channels")
@require_admin
def create_channel() -> ResponseReturnValue:
    """Create a channel (and its live code in WeCom); with `groups`, a group live code."""
    rt = runtime()
    data = _body()
    if "groups" in data:
        if data.get("staff"):
            raise ValidationError("请给出 staff 或 groups 之一 / give either staff or groups")
        return _create_group_code(data)
    spec = live_codes.ChannelSpec(
        name=str(data.get("name", "")),
        staff=_strings(data, "staff"),
        tags=tuple(TagPath.parse(t) for t in _strings(data, "tags")),
        welcome=str(data.get("welcome", "")),
        state=data.get("state") or None,
        daily_cap=_cap(data),
        backup=_strings(data, "backup"),
        attachments=tuple(_attachments(data)),
        skip_verify=bool(data.get("skip_verify", True)),
    )
    view = live_codes.create(spec, db=rt.db, wecom=rt.wecom, source="api", tz=rt.settings.tz)
    return jsonify(view.to_json()), 201


@bp.get("/channels/<name>")
@require_admin
def show_channel(name: str) -> ResponseReturnValue:
    """Show one channel with its scan, add and lost counts."""
    rt = runtime()
    with rt.db.read() as session:
        channel = lookup.get(name, session=session)
        return jsonify(lookup.view(channel, session=session, tz=rt.settings.tz).to_json())


@bp.patch("/channels/<name>")
@require_admin
def update_channel(name: str) -> ResponseReturnValue:
    """Change the given fields of a channel; others (skip_verify included) stay."""
    rt = runtime()
    data = _body()
    with rt.db.read() as session:
        kind = lookup.get(name, session=session).kind
    if kind == group_codes.GROUP:
        return _update_group_code(name, data)
    given = [k for k in _GROUP_ONLY if k in data]
    if given:
        raise ValidationError(
            f"{', '.join(given)} 仅用于群活码 / only for group codes ({name!r} is a staff code)"
        )
    kwargs: dict[str, Any] = {}
    for key in ("staff", "backup"):
        if key in data:
            kwargs[key] = _strings(data, key)
    if "tags" in data:
        kwargs["tags"] = [TagPath.parse(t) for t in _strings(data, "tags")]
    if "welcome" in data:
        kwargs["welcome_text"] = str(data["welcome"])
    if "attachments" in data:
        kwargs["attachments"] = _attachments(data)
    if "daily_cap" in data:
        kwargs["daily_cap"] = _cap(data)
    if "skip_verify" in data:
        kwargs["skip_verify"] = bool(data["skip_verify"])
    view, new_qr = live_codes.update(name, db=rt.db, wecom=rt.wecom, tz=rt.settings.tz, **kwargs)
    return jsonify({**view.to_json(), "qr_code_changed": new_qr})


@bp.delete("/channels/<name>")
@require_admin
def delete_channel(name: str) -> ResponseReturnValue:
    """Delete a channel and its live code."""
    rt = runtime()
    live_codes.delete(name, db=rt.db, wecom=rt.wecom)
    return "", 204


@bp.get("/inbox")
@require_admin
def list_inbox() -> ResponseReturnValue:
    """Return inbox counts and events of one status (dead letters by default)."""
    status = request.args.get("status", InboxStatus.DEAD.value)
    if status not in (*inbox.STATUSES, "all"):
        raise ValidationError(f"unknown status {status!r}")
    with runtime().db.read() as session:
        rows = inbox.list_events(session=session, status=None if status == "all" else status)
        counts = inbox.counts(session=session)
    return jsonify(
        counts=counts,
        events=[
            {
                "id": e.id,
                "event": e.event,
                "change_type": e.change_type,
                "status": e.status,
                "attempts": e.attempts,
                "duplicates": e.duplicates,
                "received_at": e.received_at.isoformat(),
                "last_error": e.last_error,
            }
            for e in rows
        ],
    )


@bp.post("/inbox/replay")
@require_admin
def replay_inbox() -> ResponseReturnValue:
    """Queue dead letters (or the ids given as {"ids": [...]}) again and wake the worker."""
    rt = runtime()
    data = json_body(current_app.config["MAX_CONTENT_LENGTH"], allow_empty=True) or {}
    ids = data.get("ids") if isinstance(data, dict) else None
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, int) for i in ids)):
        raise ValidationError("ids 须为整数列表 / ids must be a list of integers")
    with rt.db.write() as session:
        n = inbox.replay(ids or None, session=session)
    rt.handoff.nudge()
    rt.wakeups.inbox.set()
    return jsonify(replayed=n)

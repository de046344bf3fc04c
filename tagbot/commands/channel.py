"""`tagbot channel create|list|show|update|delete`: channel live codes (渠道活码)."""

from __future__ import annotations

import json
from typing import Any

import click

from bot.channels import group_codes, live_codes, lookup, welcome
from bot.config import AttachmentSettings
from bot.errors import ValidationError
from bot.tags.catalogue import TagPath
from tagbot.commands.context import CliContext, pass_ctx


def _users(value: str | None) -> tuple[str, ...]:
    return tuple(u.strip() for u in (value or "").split(",") if u.strip())


def parse_attachment(text: str) -> dict[str, Any]:
    """Parse `link:标题|URL[|描述]`, `image:MEDIA_ID或URL`, `miniprogram:标题|APPID|PAGE|MEDIA_ID`."""
    kind, _, rest = text.partition(":")
    parts = rest.split("|")
    if kind == "link" and len(parts) >= 2:
        a = AttachmentSettings(
            type="link", title=parts[0], url=parts[1], desc=parts[2] if len(parts) > 2 else ""
        )
    elif kind == "image" and rest:
        is_url = rest.startswith(("http://", "https://"))
        a = AttachmentSettings(
            type="image", picurl=rest if is_url else "", media_id="" if is_url else rest
        )
    elif kind == "miniprogram" and len(parts) == 4:
        a = AttachmentSettings(
            type="miniprogram", title=parts[0], appid=parts[1], page=parts[2], media_id=parts[3]
        )
    else:
        raise ValidationError(
            f"附件 {text!r} 格式不对 / write link:标题|URL[|描述], image:MEDIA_ID|URL"
            " or miniprogram:标题|APPID|PAGE|MEDIA_ID"
        )
    return welcome.attachment_from_settings(a)


def _print_view(v: lookup.ChannelView) -> None:
    click.echo(f"渠道 / channel: {v.name}")
    click.echo(f"  类型 / kind: {_kind(v)}")
    click.echo(f"  state:      {v.state}")
    click.echo(f"  config_id:  {v.config_id or '-'}")
    click.echo(f"  二维码 / QR: {v.qr_code or '-'}")
    if v.kind == group_codes.GROUP:
        click.echo(f"  客户群:     {', '.join(v.groups)}")
        rooms = "否"
        if v.auto_create_room:
            rooms = f"是 ({v.room_base_name or '-'} 起始序号 {v.room_base_id})"
        click.echo(f"  自动建群:   {rooms}")
        click.echo(f"  标签:       {', '.join(v.tags) or '-'}")
        click.echo(f"  来源: {v.source}   扫码 {v.scans}")
        return
    click.echo(f"  接待成员:   {', '.join(v.staff)}")
    if v.backup:
        click.echo(f"  备用成员:   {', '.join(v.backup)}")
    click.echo(f"  标签:       {', '.join(v.tags) or '-'}")
    click.echo(f"  欢迎语:     {v.welcome or '-'}")
    if v.attachments:
        click.echo(f"  附件:       {json.dumps(list(v.attachments), ensure_ascii=False)}")
    if v.daily_cap:
        today = ", ".join(f"{u}={n}" for u, n in sorted(v.today.items())) or "-"
        click.echo(
            f"  每日上限:   {v.daily_cap} (今日 {today}; 已暂停 {', '.join(v.paused) or '-'})"
        )
    click.echo(f"  免验证:     {'是' if v.skip_verify else '否'}   来源: {v.source}")
    click.echo(f"  扫码 {v.scans} / 添加 {v.adds} / 流失 {v.lost}")


def _kind(v: lookup.ChannelView) -> str:
    return "群活码 group" if v.kind == group_codes.GROUP else "员工活码 staff"


def _create_group_code(
    ctx: CliContext,
    name: str,
    groups: str,
    tags: tuple[str, ...],
    state: str | None,
    rooms: tuple[bool, str | None, int | None],
    staff_only: dict[str, object],
) -> None:
    given = [opt for opt, value in staff_only.items() if value]
    if given:
        raise ValidationError(
            f"群活码没有接待成员、欢迎语、每日上限 / a group code takes no {', '.join(given)}"
        )
    rt = ctx.runtime
    auto, base_name, base_id = rooms
    spec = group_codes.GroupCodeSpec(
        name=name,
        chat_ids=_users(groups),
        tags=tuple(TagPath.parse(t) for t in tags),
        state=state,
        auto_create_room=auto,
        room_base_name=base_name or "",
        room_base_id=base_id,
    )
    v = group_codes.create(spec, db=rt.db, wecom=rt.wecom, source="cli", tz=rt.settings.tz)
    click.echo(f"群活码已创建 / group code created: {name}")
    click.echo(f"state={v.state}")
    click.echo(f"config_id={v.config_id}")
    click.echo(f"qr_code={v.qr_code}")
    click.echo(f"groups={','.join(v.groups)}")


@click.group("channel")
def channel_group() -> None:
    """Create and manage channel live codes (渠道活码)."""


@channel_group.command("create")
@click.argument("name")
@click.option("--staff", default=None, help="Staff userids, comma-separated (员工活码).")
@click.option(
    "--group",
    "groups",
    default=None,
    help="1-5 customer group chat ids, comma-separated: a group live code (群活码).",
)
@click.option(
    "--auto-create-room",
    is_flag=True,
    help="Group code: let WeCom open a new group when all are full.",
)
@click.option("--room-base-name", default=None, help="Auto-created groups' name (≤40 chars).")
@click.option("--room-base-id", type=int, default=None, help="Auto-created groups' first number.")
@click.option("--tag", "tags", multiple=True, help="组名/标签名; repeat for several.")
@click.option(
    "--welcome",
    "welcome_text",
    default="",
    help="Welcome text; {name} is the nickname, {staff} the staff display name.",
)
@click.option(
    "--attach",
    "attachments",
    multiple=True,
    help="link:标题|URL[|描述], image:MEDIA_ID|URL or miniprogram:标题|APPID|PAGE|MEDIA_ID; repeat.",
)
@click.option("--state", default=None, help="The state (≤30 chars); generated when omitted.")
@click.option("--daily-cap", type=int, default=None, help="New customers per staff per day.")
@click.option("--backup", default=None, help="Backup userids for when all are capped.")
@click.option(
    "--verify/--skip-verify",
    "verify",
    default=False,
    help="Whether staff must accept each add (default: added at once).",
)
@pass_ctx
def create(
    ctx: CliContext,
    name: str,
    staff: str | None,
    groups: str | None,
    auto_create_room: bool,
    room_base_name: str | None,
    room_base_id: int | None,
    tags: tuple[str, ...],
    welcome_text: str,
    attachments: tuple[str, ...],
    state: str | None,
    daily_cap: int | None,
    backup: str | None,
    verify: bool,
) -> None:
    """Create a live code in WeCom and print its state, config_id and QR code URL.

    --staff makes a staff live code (联系我); --group a group live code (加入群聊).
    """
    if (staff is None) == (groups is None):
        raise ValidationError(
            "请给出 --staff（员工活码）或 --group（群活码）之一 / give either --staff or --group"
        )
    if groups is not None:
        staff_only = {
            "--welcome": welcome_text,
            "--attach": attachments,
            "--daily-cap": daily_cap is not None,
            "--backup": backup is not None,
            "--verify": verify,
        }
        rooms = (auto_create_room, room_base_name, room_base_id)
        _create_group_code(ctx, name, groups, tags, state, rooms, staff_only)
        return
    if auto_create_room or room_base_name is not None or room_base_id is not None:
        raise ValidationError(
            "--auto-create-room / --room-base-* 仅用于群活码（--group）/ only with --group"
        )
    rt = ctx.runtime
    spec = live_codes.ChannelSpec(
        name=name,
        staff=_users(staff),
        tags=tuple(TagPath.parse(t) for t in tags),
        welcome=welcome_text,
        state=state,
        daily_cap=daily_cap,
        backup=_users(backup),
        attachments=tuple(parse_attachment(a) for a in attachments),
        skip_verify=not verify,
    )
    # Everything that can be checked here is, before any WeCom call: names, lengths, the
    # welcome, then the staff against the last sync (WeCom would refuse them with 60111).
    spec = live_codes.check_spec(spec)
    with rt.db.read() as session:
        live_codes.check_staff_known(spec.staff + spec.backup, session=session)
    v = live_codes.create(spec, db=rt.db, wecom=rt.wecom, source="cli", tz=rt.settings.tz)
    click.echo(f"渠道已创建 / channel created: {name}")
    click.echo(f"state={v.state}")
    click.echo(f"config_id={v.config_id}")
    click.echo(f"qr_code={v.qr_code}")


@channel_group.command("list")
@pass_ctx
def list_(ctx: CliContext) -> None:
    """List channels with their scan, add and lost counts."""
    rt = ctx.runtime
    with rt.db.read() as session:
        views = [
            lookup.view(c, session=session, tz=rt.settings.tz)
            for c in lookup.list_all(session=session)
        ]
    if not views:
        click.echo("还没有渠道 / no channels yet")
        return
    click.echo("名称\t类型\tstate\t接待成员/客户群\t扫码\t添加\t流失")
    for v in views:
        who = ",".join(v.groups if v.kind == group_codes.GROUP else v.staff)
        click.echo(f"{v.name}\t{v.kind}\t{v.state}\t{who}\t{v.scans}\t{v.adds}\t{v.lost}")


@channel_group.command("show")
@click.argument("name")
@pass_ctx
def show(ctx: CliContext, name: str) -> None:
    """Show one channel: live code, staff, tags, welcome and counts."""
    rt = ctx.runtime
    with rt.db.read() as session:
        v = lookup.view(lookup.get(name, session=session), session=session, tz=rt.settings.tz)
    _print_view(v)


@channel_group.command("update")
@click.argument("name")
@click.option("--staff", default=None, help="Replace the staff (comma-separated).")
@click.option("--backup", default=None, help="Replace the backups (comma-separated; '' none).")
@click.option("--group", "groups", default=None, help="Group code: replace its 1-5 chat ids.")
@click.option(
    "--auto-create-room/--no-auto-create-room",
    "auto_create_room",
    default=None,
    help="Group code: whether WeCom opens a new group when all are full.",
)
@click.option("--room-base-name", default=None, help="Group code: auto-created groups' name.")
@click.option("--room-base-id", type=int, default=None, help="Group code: their first number.")
@click.option("--tag", "tags", multiple=True, help="Replace the tags (组名/标签名, repeat).")
@click.option("--clear-tags", is_flag=True, help="Remove every tag.")
@click.option("--welcome", "welcome_text", default=None, help="Replace the welcome text.")
@click.option("--attach", "attachments", multiple=True, help="Replace the attachments.")
@click.option("--clear-attachments", is_flag=True, help="Remove every attachment.")
@click.option("--daily-cap", type=int, default=None, help="Set the daily cap.")
@click.option("--no-daily-cap", is_flag=True, help="Remove the daily cap.")
@click.option(
    "--verify/--skip-verify",
    "verify",
    default=None,
    help="Make staff accept each add, or add customers at once.",
)
@pass_ctx
def update(
    ctx: CliContext,
    name: str,
    staff: str | None,
    backup: str | None,
    groups: str | None,
    auto_create_room: bool | None,
    room_base_name: str | None,
    room_base_id: int | None,
    tags: tuple[str, ...],
    clear_tags: bool,
    welcome_text: str | None,
    attachments: tuple[str, ...],
    clear_attachments: bool,
    daily_cap: int | None,
    no_daily_cap: bool,
    verify: bool | None,
) -> None:
    """Change a channel; what is not given stays as it is (skip_verify included)."""
    rt = ctx.runtime
    with rt.db.read() as session:
        kind = lookup.get(name, session=session).kind
    group_opts = (groups, auto_create_room, room_base_name, room_base_id)
    if kind == group_codes.GROUP:
        staff_only = (staff, backup, welcome_text, daily_cap, verify)
        if (
            any(v is not None for v in staff_only)
            or attachments
            or clear_attachments
            or no_daily_cap
        ):
            raise ValidationError(
                "群活码没有接待成员、欢迎语、每日上限 / a group code takes --group, --tag and"
                " --auto-create-room/--room-base-* only"
            )
        gv = group_codes.update(
            name,
            db=rt.db,
            wecom=rt.wecom,
            chat_ids=_users(groups) if groups is not None else None,
            tags=[TagPath.parse(t) for t in tags] if tags or clear_tags else None,
            auto_create_room=auto_create_room,
            room_base_name=room_base_name,
            room_base_id=room_base_id,
            tz=rt.settings.tz,
        )
        click.echo(f"群活码已更新 / group code updated: {name}")
        _print_view(gv)
        return
    if any(v is not None for v in group_opts):
        raise ValidationError(
            f"渠道 {name!r} 是员工活码：--group / --auto-create-room / --room-base-* 仅用于群活码"
            " / only for group codes"
        )
    kwargs: dict[str, Any] = {}
    if staff is not None:
        kwargs["staff"] = _users(staff)
    if backup is not None:
        kwargs["backup"] = _users(backup)
    if tags or clear_tags:
        kwargs["tags"] = [TagPath.parse(t) for t in tags]
    if welcome_text is not None:
        kwargs["welcome_text"] = welcome_text
    if attachments or clear_attachments:
        kwargs["attachments"] = [parse_attachment(a) for a in attachments]
    if no_daily_cap:
        kwargs["daily_cap"] = None
    elif daily_cap is not None:
        kwargs["daily_cap"] = daily_cap
    if verify is not None:
        kwargs["skip_verify"] = not verify
    if staff is not None or backup is not None:
        with rt.db.read() as session:
            live_codes.check_staff_known(
                kwargs.get("staff", ()) + kwargs.get("backup", ()), session=session
            )
    v, new_qr = live_codes.update(name, db=rt.db, wecom=rt.wecom, tz=rt.settings.tz, **kwargs)
    click.echo(f"渠道已更新 / channel updated: {name}")
    if new_qr:
        click.echo("注意：成员数在一人与多人之间变化，二维码已更换 / the QR code changed")
    _print_view(v)


@channel_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def delete(ctx: CliContext, name: str, yes: bool) -> None:
    """Delete the live code in WeCom (its QR code stops working) and the channel."""
    if not yes:
        click.confirm(f"删除渠道 {name}？已印刷的二维码将失效", abort=True)
    rt = ctx.runtime
    live_codes.delete(name, db=rt.db, wecom=rt.wecom)
    click.echo(f"渠道已删除 / channel deleted: {name}")

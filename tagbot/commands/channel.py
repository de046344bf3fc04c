"""`tagbot channel create|list|show|update|delete`: channel live codes (渠道活码)."""

from __future__ import annotations

import json
from typing import Any

import click

from bot.channels import live_codes, lookup, welcome
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
    click.echo(f"  state:      {v.state}")
    click.echo(f"  config_id:  {v.config_id or '-'}")
    click.echo(f"  二维码 / QR: {v.qr_code or '-'}")
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


@click.group("channel")
def channel_group() -> None:
    """Create and manage channel live codes (渠道活码)."""


@channel_group.command("create")
@click.argument("name")
@click.option("--staff", required=True, help="Staff userids, comma-separated.")
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
    staff: str,
    tags: tuple[str, ...],
    welcome_text: str,
    attachments: tuple[str, ...],
    state: str | None,
    daily_cap: int | None,
    backup: str | None,
    verify: bool,
) -> None:
    """Create a live code in WeCom and print its state, config_id and QR code URL."""
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
    click.echo("名称\tstate\t接待成员\t扫码\t添加\t流失")
    for v in views:
        click.echo(f"{v.name}\t{v.state}\t{','.join(v.staff)}\t{v.scans}\t{v.adds}\t{v.lost}")


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

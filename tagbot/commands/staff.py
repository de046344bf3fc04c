"""`tagbot staff list`: each member's userid, WeCom name and the name welcomes use."""

from __future__ import annotations

import click

from bot.customers.staff import staff_entries
from tagbot.commands.context import CliContext, pass_ctx


@click.group("staff")
def staff_group() -> None:
    """Show staff and the names `{staff}` uses (display names are set in [staff] of the config)."""


@staff_group.command("list")
@pass_ctx
def list_staff(ctx: CliContext) -> None:
    """List staff: userid, name from WeCom, display name from [staff], what {staff} shows."""
    rt = ctx.runtime
    with rt.db.read() as session:
        entries = staff_entries(session=session, display_names=rt.settings.staff)
    if not entries:
        click.echo("还没有员工：先运行 `tagbot sync` / no staff yet: run `tagbot sync` first")
        return
    click.echo("userid\t企业微信姓名\t显示名 [staff]\t欢迎语 {staff}\t状态")
    for e in entries:
        status = "未同步 / not synced" if not e.synced else ("在职" if e.active else "已停用")
        click.echo(
            f"{e.userid}\t{e.wecom_name or '—'}\t{e.display_name or '—'}\t{e.shown}\t{status}"
        )
    unnamed = sum(1 for e in entries if e.synced and not (e.display_name or e.wecom_name))
    if unnamed:
        click.echo(
            f"{unnamed} 名员工没有姓名，欢迎语中的 {{staff}} 将显示 userid；"
            f"在配置的 [staff] 中填写显示名 / {unnamed} without a name: "
            "{staff} shows their userid; set display names in [staff]"
        )

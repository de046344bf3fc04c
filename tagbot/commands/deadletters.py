"""`tagbot inbox list|replay`: look at stored callbacks and replay dead letters."""

from __future__ import annotations

import click

from bot.callbacks import inbox
from bot.states import InboxStatus
from tagbot.commands.context import CliContext, pass_ctx


@click.group("inbox")
def inbox_group() -> None:
    """Stored WeCom callbacks: counts, dead letters, replay."""


@inbox_group.command("list")
@click.option(
    "--status",
    type=click.Choice([*inbox.STATUSES, "all"]),
    default=InboxStatus.DEAD.value,
    show_default=True,
)
@click.option("--limit", type=int, default=50, show_default=True)
@pass_ctx
def list_(ctx: CliContext, status: str, limit: int) -> None:
    """List callbacks (dead letters by default), newest first, with their last error."""
    rt = ctx.runtime
    with rt.db.read() as session:
        counts = inbox.counts(session=session)
        rows = inbox.list_events(
            session=session, status=None if status == "all" else status, limit=limit
        )
    click.echo("  ".join(f"{k}={v}" for k, v in counts.items()))
    if not rows:
        click.echo("没有符合条件的事件 / no matching events")
        return
    for e in rows:
        received = e.received_at.astimezone(rt.settings.tz).strftime("%Y-%m-%d %H:%M:%S")
        kind = f"{e.event}/{e.change_type}" if e.change_type else e.event
        click.echo(f"#{e.id}  {received}  {kind}  {e.status}  attempts={e.attempts}")
        if e.last_error:
            click.echo(f"    error: {e.last_error}")


@inbox_group.command("replay")
@click.argument("event_ids", nargs=-1, type=int)
@click.option("--all-dead", is_flag=True, help="Replay every dead letter.")
@pass_ctx
def replay(ctx: CliContext, event_ids: tuple[int, ...], all_dead: bool) -> None:
    """Put dead (or the given) events back in the queue; a running worker picks them up."""
    if not event_ids and not all_dead:
        raise click.UsageError("give event ids or --all-dead")
    rt = ctx.runtime
    with rt.db.write() as session:
        n = inbox.replay(list(event_ids) or None, session=session)
    click.echo(f"已重新排队 {n} 个事件 / {n} event(s) queued again")

"""`tagbot push [--tiers] [--status]`: send queued tag changes to WeCom, with progress.

The queue is the durable outbox: stopping a push (Ctrl-C, a crash) loses nothing, and
the next push or a running worker carries on, highest-value customers first.
"""

from __future__ import annotations

import sys

import click
from tqdm import tqdm

from bot.runtime import Runtime
from bot.tags import push
from bot.tags.push import PushProgress
from tagbot.commands.context import CliContext, pass_ctx


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "未知 / unknown"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _echo_progress(p: PushProgress) -> None:
    click.echo(
        f"待推送 pending: {p.pending}  处理中 in_flight: {p.in_flight}  "
        f"已完成 done: {p.done}  失败 dead: {p.dead}"
    )
    rate = (
        "—（完成的操作太少，无法测算 / too few operations to measure）"
        if p.per_minute is None
        else f"{p.per_minute:.0f}/min"
    )
    click.echo(f"速度 rate: {rate}  预计剩余 ETA: {_duration(p.eta_seconds)}")


@click.command("push")
@click.option(
    "--tiers", is_flag=True, help="First ensure tier tags and queue the tier diff, then drain."
)
@click.option("--status", "status_only", is_flag=True, help="Show progress and ETA; send nothing.")
@click.option(
    "--max", "max_operations", type=click.IntRange(min=1), help="Stop after N operations."
)
@pass_ctx
def push_command(
    ctx: CliContext, tiers: bool, status_only: bool, max_operations: int | None
) -> None:
    """Drain the tag outbox to WeCom with a progress bar and an ETA (resumable)."""
    rt = ctx.runtime
    budget = float(rt.settings.limits.calls_per_minute)
    if status_only:
        with rt.db.read() as session:
            _echo_progress(push.progress(session, fallback_per_minute=budget))
        return
    if tiers:
        plan = push.enqueue_tier_push(
            db=rt.db,
            wecom=rt.wecom,
            tiering=rt.settings.tiering,
            outbox_wakeup=rt.wakeups.outbox,
        )
        created = "、".join(str(p) for p in plan.tags.created) or "无"
        deleted = "、".join(str(p) for p in plan.tags.deleted) or "无"
        click.echo(f"分层标签 tier tags: 新建 {created}；删除 {deleted}")
        click.echo(
            f"差异 diff: {plan.diff.relations} 个跟进关系中 {plan.diff.changed} 个有变化"
            f"（+{plan.diff.adds} -{plan.diff.removes}），用时 {plan.diff.seconds:.1f}s"
        )
    drain_with_progress(rt, max_operations=max_operations)


def drain_with_progress(rt: Runtime, *, max_operations: int | None = None) -> None:
    """Drain the outbox with a progress bar on stderr, then print progress and the ETA."""
    budget = float(rt.settings.limits.calls_per_minute)
    with rt.db.read() as session:
        before = push.progress(session, fallback_per_minute=budget)
    total = before.remaining if max_operations is None else min(before.remaining, max_operations)
    bar = tqdm(total=total, unit="次", desc="推送标签", file=sys.stderr, leave=False)
    try:
        push.drain_all(
            db=rt.db,
            wecom=rt.wecom,
            stopping=rt.stopping,
            batch=min(20, rt.settings.limits.outbox_batch),
            max_operations=max_operations,
            on_progress=bar.update,
        )
    except KeyboardInterrupt:
        click.echo("已暂停，剩余操作保留在队列中 / paused, the rest stays queued", err=True)
        raise
    finally:
        bar.close()
    with rt.db.read() as session:
        _echo_progress(push.progress(session, fallback_per_minute=budget))

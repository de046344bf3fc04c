"""`tagbot retier [--dry-run] [--no-push]`: re-tier every customer now; show the moves, push the tags."""

from __future__ import annotations

import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import click
from tqdm import tqdm

from bot.errors import ValidationError
from bot.retier import Handoff, retier_configured
from bot.rules import Dimension, load_dimensions
from bot.tiering.evaluate import Move
from bot.tiering.run import RetierReport
from bot.wecom.client import counting_calls
from tagbot.commands.context import CliContext, pass_ctx
from tagbot.commands.push import drain_with_progress

NONE = "（无）"


def parse_as_of(text: str | None, ctx: CliContext) -> datetime | None:
    """Return `--as-of` as an aware time (naive means the app's zone); None for now."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValidationError(f"--as-of: 不是 ISO 8601 时间：{text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=ctx.settings.tz)


def render_moves(moves: list[Move], dims: tuple[Dimension, ...]) -> list[str]:
    """Return the table of moves per dimension, as operators read it."""
    groups = {d.name: d.tag_group for d in dims}
    lines: list[str] = []
    current = None
    width = max((len(f"{m.from_tier or NONE} → {m.to_tier or NONE}") for m in moves), default=0)
    for m in moves:
        if m.dimension != current:
            current = m.dimension
            total = sum(x.customers for x in moves if x.dimension == current)
            lines.append(f"{groups.get(current, current)}（{current}）：{total} 人变动")
        move = f"{m.from_tier or NONE} → {m.to_tier or NONE}"
        lines.append(f"  {move.ljust(width)}  {m.customers:>8}")
    return lines or ["没有客户变动层级 / no tier changes"]


def echo_report(
    report: RetierReport, handoff: Handoff | None, dims: tuple[Dimension, ...], tz: str
) -> None:
    """Print a run's summary, its moves and the WeCom calls it costs."""
    when = report.as_of.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")
    head = "试运行（未写入任何数据）" if report.dry_run else "重新分层完成"
    click.echo(
        f"{head} / re-tier as of {when} {tz}：客户 {report.customers} 人，"
        f"{report.changed_customers} 人共 {report.transitions} 次层级变动"
    )
    for line in render_moves(report.moves, dims):
        click.echo(line)
    click.echo(
        f"标签推送 / tag push: 至多 {report.relations_to_mark} 次 mark_tag"
        "（层级变动客户的有效跟进关系，每个关系一次）"
    )
    if handoff is not None:
        if handoff.queued is None:
            click.echo(
                "企业微信暂不可达：层级已记录，标签稍后用 tagbot push --tiers 排队"
                f" / WeCom unreachable, tiers recorded: {handoff.error}"
            )
        else:
            click.echo(f"已排队 {handoff.queued} 个关系的标签变更 / queued")
    if report.model is not None:
        click.echo(f"预测模型 / predictive model: {report.model.summary()}")
    for warning in report.warnings:
        click.echo(f"警告 / warning: {warning}（该规则对所有客户为假）", err=True)
    spent = "，".join(f"{k} {v:.1f}s" for k, v in report.seconds.items())
    click.echo(f"用时 / took: {spent}")


@click.command("retier")
@click.option("--dry-run", is_flag=True, help="Compute and show the moves; write nothing.")
@click.option("--as-of", "as_of", metavar="TIME", help="Tier as of this ISO time (default now).")
@click.option(
    "--no-push",
    "no_push",
    is_flag=True,
    help="Queue the tag changes but leave them to the workers or `tagbot push`.",
)
@pass_ctx
def retier_command(ctx: CliContext, dry_run: bool, as_of: str | None, no_push: bool) -> None:
    """Re-tier every customer: show moves per dimension and the WeCom calls they cost."""
    rt = ctx.runtime
    dims = load_dimensions(rt.settings.tiering.dimensions)
    if not dims:
        raise ValidationError("配置中没有分层维度（[[tiering.dimensions]]）/ no tier dimensions")
    moment = parse_as_of(as_of, ctx)
    bar: tqdm[None] | None = None

    def on_progress(stage: str, done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="条", desc="记录层级变动", file=sys.stderr, leave=False)
        bar.update(done - bar.n)

    click.echo("计算指标与层级… / computing metrics and tiers…", err=True)
    # Every call the run makes, whatever the API: the tag catalogue and tier tags are read
    # and created before any mark_tag.
    with counting_calls() as calls:
        try:
            report, handoff = retier_configured(
                db=rt.db,
                wecom=rt.wecom,
                settings=rt.settings,
                outbox_wakeup=rt.wakeups.outbox,
                alerts_wakeup=rt.wakeups.alerts,
                as_of=moment,
                dry_run=dry_run,
                on_progress=on_progress,
            )
        finally:
            if bar is not None:
                bar.close()
        echo_report(report, handoff, dims, rt.settings.app.timezone)
        if handoff is not None and handoff.queued is not None:
            if no_push:
                click.echo(
                    "标签变更留在队列中，由后台任务或 tagbot push 发送 / left to the workers"
                )
            else:
                # Ctrl-C (or a crash) leaves the rest queued: `tagbot push` or the workers
                # carry on.
                drain_with_progress(rt)
    click.echo(echo_calls(calls))


def echo_calls(calls: dict[str, int]) -> str:
    """Return the line that counts a run's WeCom calls, per API."""
    per_api = "，".join(f"{api} ×{n}" for api, n in calls.items())
    return f"企业微信调用 / WeCom calls: {sum(calls.values())}" + (
        f"（{per_api}）" if calls else ""
    )

"""`tagbot sync`: pull staff, the tag catalogue and every relation from WeCom now.

Scans made while the bot was down get their channel's tags: queued, then sent here; so do
customers who joined a group through a channel's group code.
"""

from __future__ import annotations

import sys

import click
from tqdm import tqdm

from bot import job_runs
from bot.sync import run_sync
from tagbot.commands.context import CliContext, pass_ctx
from tagbot.commands.push import drain_with_progress


@click.command("sync")
@pass_ctx
def sync_command(ctx: CliContext) -> None:
    """Sync staff, tags and customers from WeCom (idempotent; safe while serving)."""
    rt = ctx.runtime
    bar: tqdm[None] | None = None

    def on_progress(stage: str, done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="名员工", desc="同步客户", file=sys.stderr, leave=False)
        bar.update(done - bar.n)

    try:
        report = job_runs.run_recorded(
            rt.db,
            "sync",
            job_runs.MANUAL,
            lambda: run_sync(db=rt.db, wecom=rt.wecom, on_progress=on_progress),
        )
    finally:
        if bar is not None:
            bar.close()
    click.echo(f"同步完成 / sync done in {report.seconds:.1f}s")
    click.echo(
        f"  员工 staff:      {report.staff}（新增 {report.staff_added}，"
        f"停用 {report.staff_deactivated}）"
    )
    click.echo(f"  标签 tags:       {report.tags}")
    click.echo(f"  客户 customers:  新增 {report.customers_added}，更新 {report.customers_updated}")
    click.echo(
        f"  跟进关系 relations: {report.relations}（新增 {report.relations_added}，"
        f"更新 {report.relations_updated}，流失 {report.relations_lost}）"
    )
    click.echo(
        f"  客户标签 relation tags: +{report.relation_tags_added} -{report.relation_tags_removed}"
    )
    if report.missed_scans:
        click.echo(
            f"  补打渠道标签 {report.missed_scan_customers} 位（回调未送达）/ channel applied to"
            f" {report.missed_scans} relations whose scan callback never arrived"
            f"（{report.missed_scan_operations} 次标签操作已排队 queued）"
        )
    click.echo(
        f"  客户群 groups: {report.groups}（新增 {report.groups_added}，更新 {report.groups_updated}，"
        f"解散 {report.groups_dismissed}）；入群 {report.group_joins}，退群 {report.group_leaves}"
    )
    if report.group_joins_tagged:
        click.echo(
            f"  按群活码补打渠道标签 {report.group_join_customers} 位 / channel tags for"
            f" {report.group_joins_tagged} group joins"
            f"（{report.group_join_operations} 次标签操作已排队 queued）"
        )
    if report.orphans_linked:
        click.echo(f"  关联到客户的订单/互动/画像 linked rows: {report.orphans_linked}")
    calls = ", ".join(f"{api} ×{n}" for api, n in report.calls.items())
    click.echo(f"  企业微信调用 WeCom calls: {report.total_calls}（{calls}）")
    queued = report.missed_scan_operations + report.group_join_operations
    if queued:
        # The channel tags go out now, through the outbox, ahead of any tier push queued
        # there (which stays for the workers); Ctrl-C leaves them queued.
        drain_with_progress(rt, max_operations=queued)

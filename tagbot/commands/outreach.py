"""`tagbot outreach list | run NAME [--dry-run]`: the configured campaigns and their runs."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import click

from bot.config import CampaignSettings
from bot.outreach.audience import Candidate
from bot.outreach.group_broadcast import ChatPlan, ChatTarget
from bot.outreach.plan import RunPlan
from bot.outreach.service import get_campaign, last_runs, run_campaign
from tagbot.commands.context import CliContext, pass_ctx
from tagbot.commands.outreach_results import results_command
from tagbot.commands.retier import parse_as_of

ACTIONS = {
    "group_message": "群发",
    "group_invite": "入群邀请",
    "group_broadcast": "客户群群发",
    "follow_up": "回访任务",
    "webhook": "Webhook",
}
NO_STAFF = "（无跟进员工）"


def describe_audience(c: CampaignSettings) -> str:
    """Return the audience as operators read it: dimension, tiers or entry, `when`."""
    if c.action == "group_broadcast":
        tiers = (
            f"{c.dimension}：{'、'.join(c.tiers)} 占群内客户 ≥ {c.min_share}%" if c.tiers else ""
        )
        code = f"群活码「{c.group_code}」的群" if c.group_code else ""
        return "客户群：" + "，且 ".join(p for p in (code, tiers) if p)
    who = f"进入 {c.on_enter}" if c.on_enter else "、".join(c.tiers)
    when = f"，且 {c.when}" if c.when else ""
    code = f"，邀请加入群活码「{c.group_code}」的群" if c.group_code else ""
    return f"{c.dimension}：{who}{when}{code}"


@click.group("outreach")
def outreach_group() -> None:
    """Outreach campaigns per tier: list them, run one (or dry-run it)."""


@outreach_group.command("list")
@pass_ctx
def list_campaigns(ctx: CliContext) -> None:
    """List campaigns: action, audience, schedule, holdout, the last run and its counts."""
    rt = ctx.runtime
    campaigns = rt.settings.outreach.campaigns
    if not campaigns:
        click.echo("配置中没有触达活动（[[outreach.campaigns]]）/ no campaigns configured")
        return
    runs = last_runs(rt.db)
    zone = ZoneInfo(rt.settings.app.timezone)
    click.echo("名称\t动作\t受众\t定时\t对照组\t上次运行\t上次人数（触达/对照/限额/冷却）")
    for c in campaigns:
        run = runs.get(c.name)
        if run is None:
            last, counts = "从未运行", "—"
        else:
            last = f"{run.started_at.astimezone(zone):%Y-%m-%d %H:%M}（{run.status}）"
            counts = f"{run.treatment}/{run.holdout}/{run.capped}/{run.cooling}"
        click.echo(
            f"{c.name}\t{ACTIONS[c.action]}\t{describe_audience(c)}\t{c.schedule or '手动'}"
            f"\t{c.holdout_pct}%\t{last}\t{counts}"
        )


def _names(members: tuple[Candidate, ...], limit: int) -> str:
    shown = members if limit <= 0 else members[:limit]
    text = "、".join(
        f"{m.name}（{m.external_userid}）" if m.name else m.external_userid for m in shown
    )
    more = len(members) - len(shown)
    return text + (f" …等 {len(members)} 人" if more > 0 else "")


def echo_plan(plan: RunPlan, tz: str, *, limit: int) -> None:
    """Print a plan's counts, then per staff member who is reached, held out or excluded."""
    when = plan.as_of.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")
    head = (
        "试运行（未写入任何数据，未调用企业微信）/ dry run"
        if plan.dry_run
        else f"已生成第 {plan.run_id} 次运行 / run {plan.run_id} planned"
    )
    click.echo(f"{head}：{plan.campaign}（{ACTIONS[plan.action]}），as of {when} {tz}")
    if plan.chats is not None:
        echo_chats(plan.chats, limit=limit)
        return
    click.echo(
        f"受众 {plan.audience} 人：触达 {len(plan.treatment)}，对照组 {len(plan.holdout)}，"
        f"已达上限 {len(plan.capped)}，冷却中 {len(plan.cooling)}，"
        f"无有效跟进员工 {len(plan.unreachable)}"
        + (f"，已在群中 {len(plan.in_group)}" if plan.action == "group_invite" else "")
    )
    for share in plan.by_staff():
        click.echo(f"员工 {share.staff_userid or NO_STAFF}：")
        for label, members in (
            ("触达", share.treatment),
            ("对照组", share.holdout),
            ("已达上限", share.capped),
            ("冷却中", share.cooling),
        ):
            if members:
                click.echo(f"  {label} {len(members)} 人：{_names(members, limit)}")
    if plan.in_group:
        click.echo(
            f"已在本群活码的群中（不邀请）{len(plan.in_group)} 人："
            f"{_names(tuple(plan.in_group), limit)}"
        )
    if plan.unreachable:
        click.echo(
            f"无有效跟进员工（不触达）{len(plan.unreachable)} 人："
            f"{_names(tuple(plan.unreachable), limit)}"
        )


def _chat_names(targets: list[ChatTarget], limit: int) -> str:
    shown = targets if limit <= 0 else targets[:limit]
    text = "、".join(
        f"{t.name or t.chat_id}（{t.in_tiers}/{t.members} 人）"
        if t.members
        else t.name or t.chat_id
        for t in shown
    )
    return text + (f" …等 {len(targets)} 个" if len(targets) > len(shown) else "")


def echo_chats(chats: ChatPlan, *, limit: int) -> None:
    """Print a group_broadcast plan: groups per owner, sent, held out or cooling."""
    click.echo(
        f"客户群 {chats.selected} 个：发送 {len(chats.treatment)}，对照组 {len(chats.holdout)}，"
        f"冷却中 {len(chats.cooling)}（括号内：符合层级的客户 / 群内客户）"
    )
    owners = sorted({t.owner_userid for t in (*chats.treatment, *chats.holdout, *chats.cooling)})
    for owner in owners:
        click.echo(f"群主 {owner}：")
        for label, targets in (
            ("发送", chats.treatment),
            ("对照组", chats.holdout),
            ("冷却中", chats.cooling),
        ):
            mine = [t for t in targets if t.owner_userid == owner]
            if mine:
                click.echo(f"  {label} {len(mine)} 个：{_chat_names(mine, limit)}")


RUN_STATUS = {
    "planned": "已记录，待发送 / planned",
    "held": "免打扰时段，结束后自动发送 / held for quiet hours",
    "sending": "发送中（稍后重试的任务由后台完成）/ sending",
    "done": "已完成（群发任务需员工在企业微信确认后才发出）/ done",
    "failed": "失败，见 tagbot outreach list / failed",
}


@outreach_group.command("run")
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Show the audience; write nothing, call nothing.")
@click.option("--as-of", "as_of", metavar="TIME", help="Select as of this ISO time (default now).")
@click.option("--limit", default=20, show_default=True, help="Customers listed per group (0: all).")
@pass_ctx
def run_command(ctx: CliContext, name: str, dry_run: bool, as_of: str | None, limit: int) -> None:
    """Run campaign NAME now: plan its audience (and, unless --dry-run, record and send)."""
    rt = ctx.runtime
    get_campaign(rt.settings, name)  # an unknown name fails before any work
    plan = run_campaign(
        name,
        db=rt.db,
        wecom=rt.wecom,
        settings=rt.settings,
        stopping=rt.stopping,
        alerts_wakeup=rt.wakeups.alerts,
        trigger="manual",
        dry_run=dry_run,
        as_of=parse_as_of(as_of, ctx),
    )
    echo_plan(plan, rt.settings.app.timezone, limit=limit)
    if plan.status is not None:
        click.echo(f"运行状态 / status：{RUN_STATUS.get(plan.status, plan.status)}")


outreach_group.add_command(results_command)

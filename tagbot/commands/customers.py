"""`tagbot customer show EXTERNAL_USERID`: everything we know about one customer."""

from __future__ import annotations

from datetime import datetime

import click

from bot.customers.card import customer_card
from bot.rules import load_dimensions
from bot.tiering.why import explain_external, metric_line
from tagbot.commands.context import CliContext, pass_ctx
from tagbot.commands.retier import parse_as_of

_GENDER = {0: "未知", 1: "男", 2: "女"}
_TYPE = {1: "微信用户", 2: "企业微信用户"}
_STATUS = {"active": "有效", "lost": "已流失"}
_LOST = {"del_follow_user": "客户删除了员工", "del_external_contact": "员工删除了客户"}


@click.group("customer")
def customer_group() -> None:
    """Look up customers."""


@customer_group.command("show")
@click.argument("external_userid")
@click.option("--as-of", "as_of", metavar="TIME", help="Explain tiers as of this ISO time.")
@pass_ctx
def show(ctx: CliContext, external_userid: str, as_of: str | None) -> None:
    """Show a customer's relations, tags, orders, attributes and why they hold each tier."""
    rt = ctx.runtime
    tz = rt.settings.tz

    def when(moment: datetime | None) -> str:
        return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M") if moment else "—"

    with rt.db.read() as session:
        card = customer_card(external_userid, session=session, display_names=rt.settings.staff)
    click.echo(f"客户 {card.name or '(无名称)'}  {card.external_userid}")
    click.echo(f"  unionid:   {card.unionid or '—'}")
    click.echo(
        f"  类型:      {_TYPE.get(card.type, card.type)}  性别: {_GENDER.get(card.gender, '—')}"
    )
    if card.corp_name:
        click.echo(f"  企业:      {card.corp_name}")
    click.echo(f"  首次记录:  {when(card.created_at)}")
    click.echo(f"跟进关系（{len(card.relations)}）")
    for rel in card.relations:
        status = _STATUS.get(rel.status, rel.status)
        click.echo(f"  - 员工 {rel.staff_name}（{rel.staff_userid}）{status}")
        click.echo(f"      渠道: {rel.channel or '—'}  state: {rel.state or '—'}")
        click.echo(f"      添加时间: {when(rel.added_at)}")
        if rel.status == "lost":
            reason = _LOST.get(rel.lost_reason or "", rel.lost_reason or "—")
            click.echo(f"      流失时间: {when(rel.lost_at)}  原因: {reason}")
        click.echo(f"      标签: {'、'.join(rel.tags) if rel.tags else '—'}")
    o = card.orders
    click.echo("订单")
    click.echo(f"  已支付: {o.paid_count} 笔，共 ¥{o.paid_amount}")
    click.echo(f"  已退款: {o.refunded_count} 笔，共 ¥{o.refunded_amount}")
    click.echo(f"  首单: {when(o.first_paid_at)}  最近一单: {when(o.last_paid_at)}")
    click.echo(f"互动: {card.interactions} 次，最近 {when(card.last_interaction_at)}")
    click.echo("属性")
    if not card.attributes:
        click.echo("  —")
    for name, value in card.attributes.items():
        click.echo(f"  {name}: {value}")
    dims = load_dimensions(rt.settings.tiering.dimensions)
    if not dims:
        return
    click.echo("分层")
    zone = rt.settings.app.timezone
    moment = parse_as_of(as_of, ctx)
    views = explain_external(rt.db, dims, external_userid=external_userid, tz=zone, as_of=moment)
    for view in views:
        # One heading per dimension: its group, tier and how it was reached (the
        # explanation's own first line would name the dimension a second time).
        if view.tier:
            click.echo(f"  {view.tag_group}：{view.tier} — {view.reason}")
        else:
            click.echo(f"  {view.tag_group}：—（{view.reason}）")
        for line in view.lines[1:]:
            click.echo(f"  {line}")
        if view.metrics:
            click.echo(f"    指标：{metric_line(view.metrics)}")

"""`tagbot outreach results NAME [--json]`: a campaign's uplift against its holdout, per tier."""

from __future__ import annotations

import json
import unicodedata
from datetime import datetime
from zoneinfo import ZoneInfo

import click

from bot.outreach import report
from bot.outreach.report import CampaignResults, MetricResult, Segment
from bot.outreach.uplift import Estimate
from tagbot.commands.context import CliContext, pass_ctx
from tagbot.commands.retier import parse_as_of

HEADER = ("指标", "实验组", "对照组", "绝对提升 [95% CI]", "相对提升")
DASH = "—"


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _signed(x: float, fmt: str) -> str:
    return ("+" if x >= 0 else "") + format(x, fmt)


def _money(x: float) -> str:
    return f"¥{x:,.2f}"


def _arm(m: MetricResult) -> tuple[str, str]:
    def one(value: float | None, n: int, events: int | None) -> str:
        if value is None:
            return DASH if n == 0 else f"{DASH} (n={n})"
        if m.spec.kind == "proportion":
            return f"{_pct(value)} ({events}/{n})"
        return f"{_money(value)} (n={n})"

    if not m.elapsed:
        return DASH, DASH
    return (
        one(m.treatment.value, m.treatment.n, m.treatment.events),
        one(m.holdout.value, m.holdout.n, m.holdout.events),
    )


def _absolute(m: MetricResult) -> str:
    e = m.absolute
    if not m.elapsed:
        return report.NOT_ELAPSED
    if e is None:
        return DASH
    # Proportions in percentage points, means in yuan.
    scale, fmt, unit = (
        (100.0, ".1f", " 个百分点") if m.spec.kind == "proportion" else (1.0, ",.2f", " 元")
    )
    text = _signed(e.value * scale, fmt) + unit
    if e.low is not None and e.high is not None:
        text += f" [{_signed(e.low * scale, fmt)}, {_signed(e.high * scale, fmt)}]"
    return text


def _relative(m: MetricResult) -> str:
    e: Estimate | None = m.relative
    if not m.elapsed:
        return report.NOT_ELAPSED
    if e is None:
        return DASH
    text = _signed(e.value * 100, ".0f") + "%"
    if e.low is not None and e.high is not None:
        text += f" [{_signed(e.low * 100, '.0f')}%, {_signed(e.high * 100, '.0f')}%]"
    return text


def render_table(metrics: tuple[MetricResult, ...]) -> list[str]:
    """Return the metric table as aligned lines."""
    rows = [HEADER]
    for m in metrics:
        rows.append((m.spec.label, *_arm(m), _absolute(m), _relative(m)))
    widths = [max(_width(r[i]) for r in rows) for i in range(len(HEADER))]
    return [
        "  ".join(_pad(cell, w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]


def _runs_note(metrics: tuple[MetricResult, ...], runs: int) -> list[str]:
    partial = sorted({m.spec.days for m in metrics if 0 < m.runs < runs})
    return [
        f"{days} 天指标只含观察期已满的运行"
        f"（{next(m.runs for m in metrics if m.spec.days == days)}/{runs} 次）"
        for days in partial
    ]


def render_segment(segment: Segment, runs: int) -> list[str]:
    """Return one tier's tables: intent-to-treat, then among the reached."""
    lines = [f"【{segment.tier}】 意向处理（实验组全部计入，无论是否触达）vs 对照组"]
    lines += render_table(segment.itt)
    lines += _runs_note(segment.itt, runs)
    if segment.warning:
        lines.append(f"⚠ {segment.warning}")
    lines.append(f"  {report.REACHED_NOTE}")
    lines += ["  " + line for line in render_table(segment.reached)]
    return lines


GROUP_LABELS = {
    "planned": "排队中",
    "queued": "排队中",
    "created": "待群主确认",
    "sent": "已发送",
    "over_quota": "群接收达上限",
    "unconfirmed": "群主未确认",
    "failed": "发送失败",
    "holdout": "对照组（不发送）",
}


def render(results: CampaignResults, tz: ZoneInfo) -> list[str]:
    """Return the whole report as operators read it."""

    def when(t: datetime | None) -> str:
        return t.astimezone(tz).strftime("%Y-%m-%d %H:%M") if t else DASH

    lines = [
        f"活动「{results.campaign}」效果（截至 {when(results.as_of)} {tz.key}）："
        f"已发送 {results.runs} 次运行，首次 {when(results.first_run)}，"
        f"最近 {when(results.last_run)}"
    ]
    if results.unsent_runs:
        lines.append(f"另有 {results.unsent_runs} 次运行尚未发送，不计入")
    if not results.runs:
        lines.append("还没有已发送的运行，暂无结果")
        return lines
    if results.groups is not None:  # group_broadcast: per group, no customer outcomes
        counts = "，".join(
            f"{GROUP_LABELS.get(status, status)} {n}"
            for status, n in sorted(results.groups.items())
        )
        lines.append(f"客户群：{counts or '无'}")
        return lines
    for segment in results.segments:
        lines.append("")
        lines += render_segment(segment, results.runs)
    lines += ["", report.METHOD, f"注：{report.AOV_NOTE}"]
    return lines


@click.command("results")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--as-of", "as_of", metavar="TIME", help="Measure as of this ISO time (default now).")
@pass_ctx
def results_command(ctx: CliContext, name: str, as_json: bool, as_of: str | None) -> None:
    """Show a campaign's uplift against its holdout per tier, with 95% intervals."""
    rt = ctx.runtime
    moment = parse_as_of(as_of, ctx)
    with rt.db.read() as session:
        results = report.campaign_results(name, session=session, now=moment)
    if as_json:
        click.echo(json.dumps(results.to_json(), ensure_ascii=False, indent=2))
        return
    for line in render(results, rt.settings.tz):
        click.echo(line)

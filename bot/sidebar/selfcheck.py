"""The 系统 page's sidebar self-check: can the bot get both JS-SDK tickets right now?"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from bot.db import Database
from bot.db.types import utcnow
from bot.sidebar import tickets
from bot.sidebar.tickets import TicketKind, TicketUnavailableError
from bot.wecom.client import WeComClient

NAMES = {TicketKind.CORP: "企业 jsapi_ticket", TicketKind.AGENT: "应用 jsapi_ticket"}


@dataclass(frozen=True)
class CheckLine:
    """One checked item, in Chinese for the operator."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class TicketCheck:
    """Whether the sidebar can be signed: one line per ticket."""

    lines: tuple[CheckLine, ...]

    @property
    def ok(self) -> bool:
        return all(line.ok for line in self.lines)

    @property
    def summary(self) -> str:
        """Say it in one line: 正常, or what is wrong."""
        return "；".join(f"{line.name}：{line.detail}" for line in self.lines)


def check_tickets(
    *,
    db: Database,
    wecom: WeComClient,
    now: datetime | None = None,
    tz: tzinfo | None = None,
) -> TicketCheck:
    """Get both tickets through the shared store (fetching only what is not fresh) and report.

    A cached ticket counts as working: asking WeCom anew would spend the hourly quota.
    `tz` is the operator's (settings.tz) for the fetch time shown.
    """
    zone = tz or ZoneInfo("Asia/Shanghai")
    when = now or utcnow()
    lines = []
    for kind in (TicketKind.CORP, TicketKind.AGENT):
        try:
            ticket = tickets.current(kind, db=db, wecom=wecom, now=when)
        except TicketUnavailableError as err:
            lines.append(CheckLine(NAMES[kind], False, err.message_zh))
            continue
        minutes = int(ticket.left(when).total_seconds() // 60)
        fetched = ticket.fetched_at.astimezone(zone).strftime("%H:%M")
        detail = f"正常，{fetched} 获取，剩余 {minutes} 分钟"
        lines.append(CheckLine(NAMES[kind], True, detail))
    return TicketCheck(tuple(lines))

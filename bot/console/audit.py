"""The console's audit log: every sign-in, sign-out and change, with before and after."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.db.models import ConsoleAudit
from bot.db.types import utcnow

# Every action the console records, named once (the 系统 page's audit log shows these).
ACTION_LABELS: dict[str, str] = {
    "login": "登录",
    "logout": "退出",
    "login_refused": "拒绝登录",
    "sessions_revoked": "结束其他会话",
    "inbox_replayed": "重放回调死信",
    "outbox_replayed": "重放写入死信",
    "channel_created": "创建渠道活码",
    "channel_updated": "修改渠道活码",
    "channel_deleted": "删除渠道活码",
    "campaign_launched": "启动触达活动",
}


@dataclass(frozen=True)
class AuditEntry:
    """One audit row, for the 系统 page."""

    id: int
    at: datetime
    actor: str
    role: str
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    address: str

    @property
    def action_label(self) -> str:
        return ACTION_LABELS.get(self.action, self.action)


def record(
    *,
    session: Session,
    actor: str,
    role: str,
    action: str,
    target: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    address: str = "",
    at: datetime | None = None,
) -> None:
    """Add one entry to the audit log."""
    session.add(
        ConsoleAudit(
            at=at or utcnow(),
            actor=actor[:64],
            role=role,
            action=action,
            target=target[:255],
            before=before,
            after=after,
            address=address[:64],
        )
    )
    session.flush()


def recent(*, session: Session, limit: int = 50, before_id: int | None = None) -> list[AuditEntry]:
    """Return the newest entries first, older than `before_id` when given (for paging)."""
    query = select(ConsoleAudit).order_by(ConsoleAudit.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(ConsoleAudit.id < before_id)
    return [
        AuditEntry(
            id=row.id,
            at=row.at,
            actor=row.actor,
            role=row.role,
            action=row.action,
            target=row.target,
            before=row.before,
            after=row.after,
            address=row.address,
        )
        for row in session.scalars(query)
    ]


def count(*, session: Session) -> int:
    """Count every entry."""
    return int(session.scalar(select(func.count()).select_from(ConsoleAudit)) or 0)

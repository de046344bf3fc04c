"""Replay a dead tag write: back to pending, without undoing what later writes decided.

A dead mark_tag operation may be old: a later operation on the same relation may have
added or removed the same tags since. Those changes are dropped from the replayed
operation (the later intention wins, as when changes are merged), and an operation
left with nothing to send is closed as done instead of being sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from bot.db.models import OutboxOperation, OutboxTagChange
from bot.db.types import utcnow
from bot.errors import NotFoundError, TagbotError
from bot.states import OutboxStatus
from bot.tags.outbox import MARK_TAG

SUPERSEDED = "superseded by later operations on this relation (replayed: nothing left to send)"


class NotDeadError(TagbotError):
    """Only a dead letter may be replayed."""


@dataclass(frozen=True)
class Replayed:
    """What a replay did: queued again, or closed because later writes covered it."""

    operation_id: int
    status: str  # pending | done
    kept: int  # tag changes queued again
    dropped: int  # tag changes a later operation already decided


def replay_dead(operation_id: int, *, session: Session) -> Replayed:
    """Queue a dead operation again with a fresh attempt budget (see the module's docstring)."""
    op = session.get(OutboxOperation, operation_id, with_for_update=True)
    if op is None:
        raise NotFoundError(f"出站操作 #{operation_id} 不存在 / no such outbox operation")
    if op.status != OutboxStatus.DEAD:
        raise NotDeadError(f"出站操作 #{operation_id} 不是死信（状态 {op.status}），无需重放")
    later = (
        select(OutboxTagChange.tag_id)
        .join(OutboxOperation, OutboxOperation.id == OutboxTagChange.operation_id)
        .where(
            OutboxOperation.kind == MARK_TAG,
            OutboxOperation.staff_userid == op.staff_userid,
            OutboxOperation.external_userid == op.external_userid,
            OutboxOperation.id > op.id,
        )
    )
    dropped = session.execute(
        delete(OutboxTagChange)
        .where(OutboxTagChange.operation_id == op.id, OutboxTagChange.tag_id.in_(later))
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    kept = len(
        session.scalars(
            select(OutboxTagChange.tag_id).where(OutboxTagChange.operation_id == op.id)
        ).all()
    )
    now = utcnow()
    if kept == 0:
        op.status, op.done_at, op.last_error = OutboxStatus.DONE, now, SUPERSEDED
    else:
        op.status, op.attempts, op.next_attempt_at, op.locked_until = (
            OutboxStatus.PENDING,
            0,
            now,
            None,
        )
    session.flush()
    return Replayed(op.id, op.status, kept, int(dropped or 0))

"""Replay dead letters from the console: the CLI's services, each replay audited."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bot.callbacks import inbox
from bot.console import audit
from bot.db.models import InboxEvent, OutboxOperation
from bot.errors import NotFoundError
from bot.states import InboxStatus
from bot.tags import replay as outbox_replay
from bot.tags.replay import NotDeadError


def replay_inbox_event(
    event_id: int, *, session: Session, actor: str, role: str, address: str
) -> None:
    """Put one dead callback back in the queue (as `tagbot inbox replay ID`), audited."""
    event = session.get(InboxEvent, event_id)
    if event is None:
        raise NotFoundError(f"回调 #{event_id} 不存在 / no such inbox event")
    if event.status != InboxStatus.DEAD:
        raise NotDeadError(f"回调 #{event_id} 不是死信（状态 {event.status}），无需重放")
    before = {"status": event.status, "attempts": event.attempts, "error": event.last_error}
    inbox.replay([event_id], session=session)
    audit.record(
        session=session,
        actor=actor,
        role=role,
        action="inbox_replayed",
        target=f"inbox#{event_id}",
        before=before,
        after={"status": InboxStatus.PENDING, "attempts": 0},
        address=address,
    )


def replay_outbox_operation(
    operation_id: int, *, session: Session, actor: str, role: str, address: str
) -> outbox_replay.Replayed:
    """Queue one dead tag write again (later writes to the same tags win), audited."""
    op = session.get(OutboxOperation, operation_id)
    before = {"status": op.status, "attempts": op.attempts, "error": op.last_error} if op else None
    done = outbox_replay.replay_dead(operation_id, session=session)
    audit.record(
        session=session,
        actor=actor,
        role=role,
        action="outbox_replayed",
        target=f"outbox#{operation_id}",
        before=before,
        after={"status": done.status, "kept": done.kept, "dropped": done.dropped},
        address=address,
    )
    return done

"""Poll the results of created 群发 tasks: who was sent, not a friend, over quota, unconfirmed.

A 群发 is sent only when its member confirms it in the WeCom client, so results come in over
days. Each created group_message, group_invite or group_broadcast task is polled at most
every POLL_EVERY (its `next_attempt_at`): `get_groupmsg_task` says whether the member
confirmed (0 unsent, 2 sent); only then `get_groupmsg_send_result` gives each customer's
status (1 sent, 2 not a friend, 3 over quota, 0 unsent). A customer still unsent when the
task's results window (RESULTS_WINDOW after creation) has passed becomes `unconfirmed`. A
task whose deliveries are all final is `results_final` and never polled again. Right after
creation WeCom answers 41063 (still dispatching): tried again after DISPATCH_RETRY.
Customers whose delivery changed are marked touched, so their reach metrics reach their
tiers soon. A group_broadcast's results come per group (`chat_id`) onto
campaign_group_deliveries; WeCom's 2 for a group (it could not post) is recorded as
`failed`.

Several processes may run the poller: a task is claimed by moving its `next_attempt_at`
forward in one conditional UPDATE, so each due poll is made once.
See https://developer.work.weixin.qq.com/document/path/93338.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot import touched
from bot.db import Database
from bot.db.models import CampaignDelivery, CampaignTask, Customer
from bot.db.types import utcnow
from bot.errors import WeComError
from bot.outreach import claims, group_broadcast
from bot.states import DeliveryStatus, TaskStatus
from bot.wecom.client import WeComClient
from bot.wecom.types import GroupMsgSendResult, GroupMsgTask

log = logging.getLogger(__name__)

RESULTS_WINDOW = timedelta(days=3)  # a member who has not confirmed by then will not
POLL_EVERY = timedelta(minutes=30)  # per task: ≤ 2 calls a task each time
DISPATCH_RETRY = timedelta(minutes=1)  # after 41063 (WeCom still dispatching the task)
ERROR_RETRY = timedelta(minutes=5)  # after a retryable error (network, system busy)
POLL_BATCH = 50  # tasks claimed per step
UPDATE_CHUNK = 1000  # delivery ids per UPDATE statement
STILL_DISPATCHING = 41063

# WeCom's per-customer send status -> the delivery's status (0 stays `created`).
SEND_STATUSES: dict[int, str] = {
    1: DeliveryStatus.SENT,
    2: DeliveryStatus.NOT_FRIEND,
    3: DeliveryStatus.OVER_QUOTA,
}
MEMBER_SENT = 2  # get_groupmsg_task: the member confirmed the task


@dataclass
class PollReport:
    """What one poll step did: tasks polled, WeCom calls made, outcomes per delivery."""

    tasks: int = 0
    calls: int = 0
    dispatching: int = 0  # tasks WeCom answered 41063 for
    errors: int = 0
    final: int = 0  # tasks whose results became final in this step
    deliveries: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class _Due:
    id: int
    msgid: str
    sender: str
    created: datetime
    kind: str = claims.GROUP_MESSAGE


def _deadline(task: _Due) -> datetime:
    return task.created + RESULTS_WINDOW


def _due(session: Session, now: datetime, limit: int) -> list[_Due]:
    rows = session.execute(
        select(
            CampaignTask.id,
            CampaignTask.msgid,
            CampaignTask.sender,
            CampaignTask.attempted_at,
            CampaignTask.created_at,
            CampaignTask.kind,
        )
        .where(
            CampaignTask.kind.in_(claims.TEMPLATE_KINDS),
            CampaignTask.status == TaskStatus.CREATED,
            CampaignTask.results_final.is_(False),
            CampaignTask.msgid.is_not(None),
            CampaignTask.next_attempt_at <= now,
        )
        .order_by(CampaignTask.next_attempt_at, CampaignTask.id)
        .limit(limit)
    ).all()
    # The results window runs from the add_msg_template call (attempted_at), else the row.
    return [_Due(r.id, r.msgid, r.sender, r.attempted_at or r.created_at, r.kind) for r in rows]


def _claim(session: Session, task: _Due, now: datetime) -> bool:
    """Take a due task by moving its next poll forward; False when another process did."""
    result = session.execute(
        update(CampaignTask)
        .where(
            CampaignTask.id == task.id,
            CampaignTask.next_attempt_at <= now,
            CampaignTask.results_final.is_(False),
        )
        .values(next_attempt_at=now + POLL_EVERY, polled_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def _fetch(task: _Due, report: PollReport, *, wecom: WeComClient) -> dict[str, GroupMsgSendResult]:
    """Ask WeCom for the members' confirmations, then the results of those who confirmed."""
    report.calls += 1
    members: list[GroupMsgTask] = wecom.get_groupmsg_task(task.msgid)
    results: dict[str, GroupMsgSendResult] = {}
    for member in members:
        if member.status != MEMBER_SENT:
            continue  # nothing sent yet: send_result would only say 0 for everyone
        report.calls += 1
        for row in wecom.get_groupmsg_send_result(task.msgid, member.userid):
            key = row.chat_id or row.external_userid  # a group 群发 reports per chat_id
            if key:
                results[key] = row
    return results


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), UPDATE_CHUNK):
        yield ids[i : i + UPDATE_CHUNK]


def _apply(
    session: Session,
    task: _Due,
    results: dict[str, GroupMsgSendResult],
    *,
    now: datetime,
    final_window: bool,
    report: PollReport,
) -> bool:
    """Record the results on the task's created deliveries; return True when all are final."""
    if task.kind == claims.GROUP_BROADCAST:
        return _apply_groups(
            session, task, results, now=now, final_window=final_window, report=report
        )
    waiting = session.execute(
        select(CampaignDelivery.id, CampaignDelivery.customer_id, Customer.external_userid)
        .join(Customer, Customer.id == CampaignDelivery.customer_id)
        .where(
            CampaignDelivery.task_id == task.id, CampaignDelivery.status == DeliveryStatus.CREATED
        )
    ).all()
    groups: dict[tuple[str, int | None, datetime | None], list[int]] = defaultdict(list)
    changed: list[int] = []
    for delivery_id, customer_id, external_userid in waiting:
        row = results.get(external_userid)
        status = SEND_STATUSES.get(row.status) if row is not None else None
        if status is not None and row is not None:
            sent_at = (
                datetime.fromtimestamp(row.send_time, UTC)
                if status == DeliveryStatus.SENT and row.send_time
                else None
            )
            groups[(status, row.status, sent_at)].append(delivery_id)
            changed.append(customer_id)
        elif final_window:
            groups[
                (DeliveryStatus.UNCONFIRMED, row.status if row is not None else None, None)
            ].append(delivery_id)
            changed.append(customer_id)
    for (status, send_status, sent_at), ids in groups.items():
        values: dict[str, object] = {"status": status, "send_status": send_status}
        if sent_at is not None:
            values["sent_at"] = sent_at
        for chunk in _chunks(ids):
            session.execute(
                update(CampaignDelivery)
                .where(
                    CampaignDelivery.id.in_(chunk),
                    CampaignDelivery.status == DeliveryStatus.CREATED,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        report.deliveries[status] += len(ids)
    # Their reach metrics changed: the touched re-tier takes them soon (rules may read them).
    touched.touch(changed, session=session)
    done = len(changed) == len(waiting)
    values = {"polled_at": now, "last_error": None}
    if done:
        values["results_final"] = True
    session.execute(
        update(CampaignTask)
        .where(CampaignTask.id == task.id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return done


def _apply_groups(
    session: Session,
    task: _Due,
    results: dict[str, GroupMsgSendResult],
    *,
    now: datetime,
    final_window: bool,
    report: PollReport,
) -> bool:
    """As `_apply`, for a group 群发: results by chat_id on campaign_group_deliveries."""
    waiting = group_broadcast.waiting(session, task.id)
    outcome: dict[tuple[str, int | None, datetime | None], list[int]] = defaultdict(list)
    final = 0
    for delivery_id, chat_id in waiting:
        row = results.get(chat_id)
        status = SEND_STATUSES.get(row.status) if row is not None else None
        if status == DeliveryStatus.NOT_FRIEND:
            status = DeliveryStatus.FAILED  # 2 for a group: WeCom could not post to it
        if status is not None and row is not None:
            sent_at = (
                datetime.fromtimestamp(row.send_time, UTC)
                if status == DeliveryStatus.SENT and row.send_time
                else None
            )
            outcome[(status, row.status, sent_at)].append(delivery_id)
        elif final_window:
            outcome[(DeliveryStatus.UNCONFIRMED, row.status if row else None, None)].append(
                delivery_id
            )
        else:
            continue
        final += 1
    for (status, send_status, sent_at), ids in outcome.items():
        for chunk in _chunks(ids):
            group_broadcast.set_status(session, chunk, status, send_status, sent_at)
        report.deliveries[status] += len(ids)
    done = final == len(waiting)
    values: dict[str, object] = {"polled_at": now, "last_error": None}
    if done:
        values["results_final"] = True
    session.execute(
        update(CampaignTask)
        .where(CampaignTask.id == task.id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return done


def _retry(task: _Due, *, db: Database, at: datetime, error: str | None) -> None:
    with db.write() as session:
        session.execute(
            update(CampaignTask)
            .where(CampaignTask.id == task.id)
            .values(next_attempt_at=at, last_error=error)
            .execution_options(synchronize_session=False)
        )


def poll_task(
    task: _Due, *, db: Database, wecom: WeComClient, now: datetime, report: PollReport
) -> None:
    """Poll one claimed task and record what WeCom says."""
    final_window = now >= _deadline(task)
    try:
        results = _fetch(task, report, wecom=wecom)
    except WeComError as exc:
        if exc.errcode == STILL_DISPATCHING:
            report.dispatching += 1
            _retry(task, db=db, at=now + DISPATCH_RETRY, error=None)
            return
        report.errors += 1
        log.warning("group message %s: results not polled: %s", task.msgid, exc)
        if not exc.retryable and final_window:
            # Nothing more will be learnt (e.g. the task was cancelled): close it.
            with db.write() as session:
                _apply(session, task, {}, now=now, final_window=True, report=report)
                report.final += 1
            return
        at = now + (ERROR_RETRY if exc.retryable else POLL_EVERY)
        _retry(task, db=db, at=at, error=str(exc))
        return
    with db.write() as session:
        if _apply(session, task, results, now=now, final_window=final_window, report=report):
            report.final += 1
        else:
            # Not final: poll again on the cadence, but not past the window's end by much.
            next_at = min(now + POLL_EVERY, max(_deadline(task), now + DISPATCH_RETRY))
            session.execute(
                update(CampaignTask)
                .where(CampaignTask.id == task.id)
                .values(next_attempt_at=next_at)
                .execution_options(synchronize_session=False)
            )


def poll_results(
    *,
    db: Database,
    wecom: WeComClient,
    now: datetime | None = None,
    limit: int = POLL_BATCH,
) -> PollReport:
    """Poll the group_message tasks due at `now` (default: the wall clock); report the calls."""
    when = now or utcnow()
    report = PollReport()
    with db.read() as session:
        due = _due(session, when, limit)
    for task in due:
        with db.write() as session:
            if not _claim(session, task, when):
                continue
        report.tasks += 1
        poll_task(task, db=db, wecom=wecom, now=when, report=report)
    if report.tasks:
        log.info(
            "outreach results: %d tasks polled with %d calls, %d final, deliveries %s",
            report.tasks,
            report.calls,
            report.final,
            dict(report.deliveries),
        )
    return report

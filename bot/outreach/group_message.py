"""群发 tasks: create each with add_msg_template exactly once, and tell the sender to confirm.

add_msg_template is not idempotent (wecom-api.md §3.6, §4): after a network error the
request may or may not have reached WeCom, so the task stays `calling` and is resolved
later by listing the sender's messages (get_groupmsg_list_v2) for one with its text,
never by calling again blindly. Only when none is found may it be called again.
https://developer.work.weixin.qq.com/document/path/92135
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import UTC, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot import staff_alerts
from bot.channels.welcome import attachment_from_settings
from bot.config import CampaignSettings
from bot.db import Database
from bot.db.models import CampaignDelivery, CampaignTask, Customer
from bot.db.types import utcnow
from bot.errors import TagbotError, WeComError
from bot.outreach import audience_rows, claims, group_broadcast
from bot.outreach.claims import Claimed, Clock
from bot.outreach.group_invite import get_group_code, invite_attachment
from bot.states import DeliveryStatus, TaskStatus
from bot.wecom.client import NETWORK_ERROR, WeComClient
from bot.wecom.types import GroupMsg
from bot.wecom_limits import GROUPMSG_LIST_SPAN_SECONDS

log = logging.getLogger(__name__)

NOTICE_KIND = "outreach"
RESOLVE_SLACK = timedelta(minutes=5)  # clocks differ: look a little before attempted_at


def notice_text(n: int, tier: str) -> tuple[str, str]:
    """Return (subject, text) of the app message asking a sender to confirm a 群发."""
    subject = f"{n} 位{audience_rows.customers_word(tier)}的群发待确认"
    return subject, f"你有{subject}，请在企业微信「客户联系→群发助手」中确认发送"


def group_notice_text(n: int) -> tuple[str, str]:
    """Return (subject, text) asking a group owner to confirm a 群发 to their groups."""
    subject = f"{n} 个客户群的群发待确认"
    return subject, f"你有{subject}，请在企业微信「客户联系→群发助手」中确认发送到客户群"


def _chat_type(task: Claimed) -> str:
    return "group" if task.kind == claims.GROUP_BROADCAST else "single"


def _record_created(
    session: Session, task: Claimed, msgid: str, fail_list: Sequence[str], clock: Clock
) -> None:
    """Store the msgid; deliveries `created` (fail_list: `failed`); queue the sender's notice."""
    if not claims.finish(task, TaskStatus.CREATED, clock(), session=session, msgid=msgid):
        return
    if task.kind == claims.GROUP_BROADCAST:
        groups = group_broadcast.mark_created(session, task.id)
        if groups:
            subject, text = group_notice_text(groups)
            staff_alerts.enqueue(
                session,
                userid=task.sender,
                kind=NOTICE_KIND,
                subject=subject,
                text=text,
                dedup_key=f"groupmsg:{task.id}",
            )
        return
    if fail_list:
        failed_ids = select(Customer.id).where(Customer.external_userid.in_(list(fail_list)))
        session.execute(
            update(CampaignDelivery)
            .where(
                CampaignDelivery.task_id == task.id,
                CampaignDelivery.status == DeliveryStatus.QUEUED,
                CampaignDelivery.customer_id.in_(failed_ids),
            )
            .values(status=DeliveryStatus.FAILED)
        )
    session.execute(
        update(CampaignDelivery)
        .where(
            CampaignDelivery.task_id == task.id, CampaignDelivery.status == DeliveryStatus.QUEUED
        )
        .values(status=DeliveryStatus.CREATED)
    )
    n = session.scalar(
        select(func.count())
        .select_from(CampaignDelivery)
        .where(
            CampaignDelivery.task_id == task.id, CampaignDelivery.status == DeliveryStatus.CREATED
        )
    )
    if n:
        subject, text = notice_text(int(n), audience_rows.tier_label(session, task.id))
        staff_alerts.enqueue(
            session,
            userid=task.sender,
            kind=NOTICE_KIND,
            subject=subject,
            text=text,
            dedup_key=f"groupmsg:{task.id}",
        )


def _create(
    task: Claimed,
    campaign: CampaignSettings,
    clock: Clock,
    *,
    db: Database,
    wecom: WeComClient,
    alerts_wakeup: threading.Event,
) -> None:
    try:
        with db.read() as session:
            if task.kind == claims.GROUP_BROADCAST:
                chats = group_broadcast.queued_chat_ids(session, task.id)
                targets: list[str] = []
            else:
                targets = audience_rows.external_userids(session, task.id)
                chats = []
            attachments = [attachment_from_settings(a) for a in campaign.attachments]
            if task.kind == claims.GROUP_INVITE:
                # read now, not at planning: the code's QR may have been renewed since
                code = get_group_code(session, campaign.group_code or "")
                attachments.insert(0, invite_attachment(code))
    except TagbotError as exc:
        with db.write() as session:
            claims.fail(task, f"bad attachment: {exc}", clock(), session=session)
        return
    if task.kind == claims.GROUP_BROADCAST and not chats:
        # an empty chat_id_list would let the owner pick any of their groups
        with db.write() as session:
            claims.fail(task, "no groups queued for this task", clock(), session=session)
        return
    try:
        msgid, fail_list = wecom.add_msg_template(
            sender=task.sender,
            external_userids=targets,
            text=task.text,
            attachments=attachments,
            chat_type=_chat_type(task),
            chat_id_list=chats,
        )
    except WeComError as err:
        with db.write() as session:
            if err.errcode == NETWORK_ERROR:
                # Even "never sent" is resolved rather than trusted: listing costs one call,
                # a second 群发 in a member's client costs the customer's quota.
                claims.settle(task, str(err), clock(), session=session)
            elif err.retryable:
                claims.retry_later(task, str(err), clock(), session=session)
            else:
                claims.fail(task, f"{err.errcode}: {err.errmsg}", clock(), session=session)
        log.warning("群发 task %d (%s): %s", task.id, task.sender, err)
        return
    with db.write() as session:
        _record_created(session, task, msgid, fail_list, clock)
    alerts_wakeup.set()


def _unclaimed(session: Session, candidates: list[GroupMsg]) -> list[GroupMsg]:
    if not candidates:
        return []
    held = set(
        session.scalars(
            select(CampaignTask.msgid).where(CampaignTask.msgid.in_([m.msgid for m in candidates]))
        )
    )
    return [m for m in candidates if m.msgid not in held]


def _resolve(task: Claimed, clock: Clock, *, db: Database, wecom: WeComClient) -> GroupMsg | None:
    """Find the message a `calling` task's earlier request created, if it did."""
    start = int((task.attempted_at.astimezone(UTC) - RESOLVE_SLACK).timestamp())
    end = int((max(clock(), utcnow()) + RESOLVE_SLACK).timestamp())
    listed = wecom.get_groupmsg_list_v2(
        start_time=max(start, end - GROUPMSG_LIST_SPAN_SECONDS),
        end_time=end,
        creator=task.sender,
        chat_type=_chat_type(task),
    )
    same = sorted((m for m in listed if m.text == task.text), key=lambda m: m.create_time)
    with db.read() as session:
        free = _unclaimed(session, same)
    return free[0] if free else None


def _resolve_and_record(
    task: Claimed, clock: Clock, *, db: Database, wecom: WeComClient, alerts_wakeup: threading.Event
) -> None:
    try:
        found = _resolve(task, clock, db=db, wecom=wecom)
    except WeComError as err:
        with db.write() as session:
            if err.retryable:
                claims.settle(task, f"resolving: {err}", clock(), session=session)
            else:  # cannot tell whether it exists: failing is safe, calling again is not
                claims.fail(
                    task,
                    f"could not resolve: {err.errcode}: {err.errmsg}",
                    clock(),
                    session=session,
                )
        return
    with db.write() as session:
        if found is None:
            claims.retry_now(task, "resolved: WeCom has no such message", clock(), session=session)
            log.info("群发 task %d: earlier call never reached WeCom; calling again", task.id)
        else:
            _record_created(session, task, found.msgid, (), clock)
            log.info("群发 task %d: resolved to %s", task.id, found.msgid)
    if found is not None:
        alerts_wakeup.set()


def perform(
    task: Claimed,
    campaign: CampaignSettings,
    clock: Clock,
    *,
    db: Database,
    wecom: WeComClient,
    alerts_wakeup: threading.Event,
) -> None:
    """Create a claimed 群发 task in WeCom, or resolve one an earlier attempt left `calling`."""
    if task.resolving:
        _resolve_and_record(task, clock, db=db, wecom=wecom, alerts_wakeup=alerts_wakeup)
    else:
        _create(task, campaign, clock, db=db, wecom=wecom, alerts_wakeup=alerts_wakeup)

"""Follow-up tasks (回访): one app message per member listing their customers to call on.

No customer is messaged; the deliveries become `notified` so the outcome is measured like
a 群发's. An app message that may or may not have gone out is sent again: a member
reading a reminder twice costs less than a member never reading it.
https://developer.work.weixin.qq.com/document/path/90236
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import update

from bot.config import CampaignSettings
from bot.db import Database
from bot.db.models import CampaignDelivery
from bot.errors import WeComError
from bot.outreach import audience_rows, claims
from bot.outreach.claims import Claimed, Clock
from bot.staff_alerts import TEXT_MAX_BYTES
from bot.states import DeliveryStatus, TaskStatus
from bot.wecom.client import NETWORK_ERROR, WeComClient

log = logging.getLogger(__name__)

MAX_NAMES = 50  # listed in one message; the rest are counted


def compose(n: int, tier: str, action: str, names: list[str]) -> str:
    """Write 「3 位高价值客户进入沉睡，建议电话回访：张三、李四、王五」 under the byte limit."""
    head = f"{n} 位{audience_rows.customers_word(tier)}{action}："
    shown: list[str] = []
    for name in names[:MAX_NAMES]:
        tail = "" if len(shown) + 1 == n else f"…等 {n} 位"
        if len((head + "、".join([*shown, name]) + tail).encode()) > TEXT_MAX_BYTES:
            break
        shown.append(name)
    rest = "" if len(shown) == n else f"…等 {n} 位"
    return head + "、".join(shown) + rest


def perform(
    task: Claimed,
    campaign: CampaignSettings,
    clock: Clock,
    *,
    db: Database,
    wecom: WeComClient,
    alerts_wakeup: threading.Event,
) -> None:
    """Send a claimed follow-up task's app message; its deliveries become `notified`."""
    del alerts_wakeup  # the message itself is the alert: nothing queued for the sender
    with db.read() as session:
        names = audience_rows.shown_names(session, task.id, task.sender, MAX_NAMES)
        tier = audience_rows.tier_label(session, task.id)
    text = compose(task.customers, tier, task.text, names)
    try:
        result = wecom.send_app_message([task.sender], text=text)
    except WeComError as err:
        with db.write() as session:
            if err.retryable or err.errcode == NETWORK_ERROR:
                claims.retry_later(task, str(err), clock(), session=session)
            else:
                claims.fail(task, f"{err.errcode}: {err.errmsg}", clock(), session=session)
        log.warning("follow-up task %d (%s): %s", task.id, task.sender, err)
        return
    with db.write() as session:
        if task.sender in result.invalid_users:
            claims.fail(task, f"WeCom cannot reach member {task.sender}", clock(), session=session)
            return
        if claims.finish(task, TaskStatus.SENT, clock(), session=session):
            session.execute(
                update(CampaignDelivery)
                .where(
                    CampaignDelivery.task_id == task.id,
                    CampaignDelivery.status == DeliveryStatus.QUEUED,
                )
                .values(status=DeliveryStatus.NOTIFIED, sent_at=clock())
            )

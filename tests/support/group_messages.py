"""A created 群发 task recorded the way the executor records one, for the results tests.

The rows (campaign, run, task, deliveries) are written first, then add_msg_template is
really called through the bot's WeCom client, then the task is `created` with its msgid
and its deliveries `created`: what bot.outreach.execute leaves for the results poller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db.models import CampaignDelivery, CampaignTask, Customer, Staff
from bot.db.types import utcnow
from bot.runtime import Runtime
from tests.support.deliveries import Delivery, add_deliveries, campaign_run


@dataclass(frozen=True)
class CreatedTask:
    """The recorded task: its id, WeCom's msgid and when add_msg_template was called."""

    id: int
    msgid: str
    attempted_at: datetime


def _get_or_add_customer(session: Session, external_userid: str) -> Customer:
    found = session.scalars(
        select(Customer).where(Customer.external_userid == external_userid)
    ).first()
    if found is None:
        found = Customer(external_userid=external_userid, name=f"客户{external_userid[-4:]}")
        session.add(found)
        session.flush()
    return found


def record_group_message(
    rt: Runtime, *, campaign: str, sender: str, customers: list[str], text: str = "新品上市"
) -> CreatedTask:
    """Record a run with one group_message task for `sender` and create it in WeCom."""
    with rt.db.write() as session:
        if session.scalars(select(Staff).where(Staff.userid == sender)).first() is None:
            session.add(Staff(userid=sender, name=sender))
        run = campaign_run(session, campaign, status="sending")
        attempted_at = utcnow()
        task = CampaignTask(
            run_id=run.id,
            campaign_id=run.campaign_id,
            kind="group_message",
            sender=sender,
            text=text,
            customers=len(customers),
            status="calling",
            attempts=1,
            attempted_at=attempted_at,
        )
        session.add(task)
        session.flush()
        add_deliveries(
            session,
            run.id,
            [
                Delivery(
                    _get_or_add_customer(session, ext).id,
                    "queued",
                    tier="高价值",
                    staff_userid=sender,
                    task_id=task.id,
                )
                for ext in customers
            ],
        )
        task_id = task.id
    msgid, fail_list = rt.wecom.add_msg_template(
        sender=sender, external_userids=customers, text=text
    )
    assert msgid
    assert not fail_list
    with rt.db.write() as session:
        created = session.get(CampaignTask, task_id)
        assert created is not None
        created.status = "created"
        created.msgid = msgid
        for delivery in session.scalars(
            select(CampaignDelivery).where(CampaignDelivery.task_id == task_id)
        ):
            delivery.status = "created"
    return CreatedTask(task_id, msgid, attempted_at)

"""Runs recorded the way the outreach plan records them: campaign, run, deliveries."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from bot.db.models import (
    CampaignDelivery,
    CampaignRun,
    CampaignTask,
    Customer,
    FollowRelation,
    Staff,
)
from bot.db.types import utcnow
from bot.runtime import Runtime
from tests.support.deliveries import Delivery, add_deliveries, campaign_run
from wecom_sim import Simulator


@dataclass(frozen=True)
class Member:
    """A member and the customers (external_userid, name) of theirs in a run's treatment."""

    userid: str
    name: str
    customers: Sequence[tuple[str, str]]


def members_in_sim(sim: Simulator, plan: Mapping[str, tuple[str, int]]) -> list[Member]:
    """Make members {userid: (name, n customers)} with friends in the simulator."""
    members = []
    for userid, (name, count) in plan.items():
        sim.add_staff(userid, name)
        customers = []
        for i in range(count):
            cname = f"{name}的客户{i}"
            customers.append((sim.add_relation(userid, name=cname), cname))
        members.append(Member(userid, name, customers))
    return members


def seeded_member(sim: Simulator, prefix: str, count: int) -> Member:
    """One member with `count` friends, bulk-created in the simulator."""
    sim.seed(1, count, prefix=prefix)
    userid = f"{prefix}_u0000"
    customer = sim.customer
    ids = sim.customers_of(userid)
    return Member(userid, f"{prefix}员工0", [(e, getattr(customer(e), "name", "")) for e in ids])


def record_run(
    rt: Runtime,
    campaign: str,
    action: str,
    members: Sequence[Member],
    *,
    tier: str = "高价值",
    holdout: Sequence[tuple[str, str]] = (),
    status: str = "planned",
) -> int:
    """Record staff, customers, relations, a run and its deliveries in one write; return run id."""
    now = utcnow()
    with rt.db.write() as session:
        run = campaign_run(
            session, campaign, action=action, dimension="价值", status=status, started_at=now
        )
        for m in members:
            staff_id = session.scalar(select(Staff.id).where(Staff.userid == m.userid))
            if staff_id is None:
                staff = Staff(userid=m.userid, name=m.name)
                session.add(staff)
                session.flush()
                staff_id = staff.id
            _customers(session, staff_id, list(m.customers))
        if holdout:
            _customers(session, None, list(holdout))
        treated = [(m.userid, ext) for m in members for ext, _ in m.customers]
        ids = dict(
            session.execute(
                select(Customer.external_userid, Customer.id).where(
                    Customer.external_userid.in_([e for _, e in treated] + [e for e, _ in holdout])
                )
            ).all()
        )
        add_deliveries(
            session,
            run.id,
            [
                Delivery(ids[ext], "planned", tier=tier, staff_userid=userid, created_at=now)
                for userid, ext in treated
            ]
            + [
                Delivery(ids[ext], "holdout", "holdout", tier=tier, created_at=now)
                for ext, _ in holdout
            ],
        )
        return run.id


def _customers(session: Session, staff_id: int | None, customers: list[tuple[str, str]]) -> None:
    """Add the customers not yet known, and their relation to the member (when given)."""
    known = set(
        session.scalars(
            select(Customer.external_userid).where(
                Customer.external_userid.in_([e for e, _ in customers])
            )
        )
    )
    fresh = [{"external_userid": e, "name": n} for e, n in customers if e not in known]
    for start in range(0, len(fresh), 2000):
        session.execute(insert(Customer), fresh[start : start + 2000])
    if staff_id is None:
        return
    related = select(FollowRelation.customer_id).where(FollowRelation.staff_id == staff_id)
    ids = list(
        session.scalars(
            select(Customer.id).where(
                Customer.external_userid.in_([e for e, _ in customers]),
                Customer.id.not_in(related),
            )
        )
    )
    if ids:
        session.execute(
            insert(FollowRelation),
            [{"staff_id": staff_id, "customer_id": cid, "status": "active"} for cid in ids],
        )


def deliveries(rt: Runtime, run_id: int) -> dict[str, tuple[str, int | None]]:
    """Return external_userid -> (delivery status, task id) of a run."""
    with rt.db.read() as session:
        rows = session.execute(
            select(Customer.external_userid, CampaignDelivery.status, CampaignDelivery.task_id)
            .join(Customer, Customer.id == CampaignDelivery.customer_id)
            .where(CampaignDelivery.run_id == run_id)
        )
        return {e: (s, t) for e, s, t in rows}


def tasks(rt: Runtime, run_id: int) -> list[CampaignTask]:
    """Return a run's tasks by id, detached."""
    with rt.db.read() as session:
        found = list(
            session.scalars(
                select(CampaignTask).where(CampaignTask.run_id == run_id).order_by(CampaignTask.id)
            )
        )
        session.expunge_all()
        return found


def run_status(rt: Runtime, run_id: int) -> str:
    """Return a run's status."""
    with rt.db.read() as session:
        return str(session.scalar(select(CampaignRun.status).where(CampaignRun.id == run_id)))


_DISPATCH = """
import json, sys
from bot.config import settings_from_mapping
from bot.outreach import execute
from bot.runtime import Runtime
rt = Runtime(settings_from_mapping(json.loads(sys.argv[1]), environ={}))
status = execute.dispatch_run(
    int(sys.argv[2]),
    db=rt.db,
    wecom=rt.wecom,
    settings=rt.settings,
    stopping=rt.stopping,
    alerts_wakeup=rt.wakeups.alerts,
)
print(status, flush=True)
"""


def dispatch_elsewhere(config: Mapping[str, Any], run_id: int) -> subprocess.Popen[bytes]:
    """Start `dispatch_run` in a process of its own (a kill -9 target)."""
    return subprocess.Popen(
        [sys.executable, "-c", _DISPATCH, json.dumps(config, ensure_ascii=False), str(run_id)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

"""Turn a run's treatment deliveries into call units: tasks per staff member, in one write."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.db.models import CampaignDelivery, CampaignRun, CampaignTask
from bot.states import DeliveryStatus, TaskStatus

TextFor = Callable[[str], str]  # sender -> the task's text


def _groups(session: Session, run_id: int, by_staff: bool) -> dict[str | None, list[int]]:
    rows = session.execute(
        select(CampaignDelivery.staff_userid, CampaignDelivery.customer_id)
        .where(
            CampaignDelivery.run_id == run_id,
            CampaignDelivery.arm == "treatment",
            CampaignDelivery.status == DeliveryStatus.PLANNED,
        )
        .order_by(CampaignDelivery.staff_userid, CampaignDelivery.customer_id)
    )
    groups: dict[str | None, list[int]] = defaultdict(list)
    for userid, customer_id in rows:
        groups[(userid or None) if by_staff else ""].append(customer_id)
    if not by_staff:  # one sequence by customer id, so batches are contiguous id ranges
        groups[""].sort()
    return groups


def new_task(
    session: Session,
    run: CampaignRun,
    *,
    kind: str,
    sender: str,
    batch: int,
    text: str,
    size: int,
    now: datetime,
) -> CampaignTask:
    """Add a pending task of `size` recipients (customers, or groups for a group 群发), flushed
    so its id can be written on its deliveries."""
    task = CampaignTask(
        run_id=run.id,
        campaign_id=run.campaign_id,
        kind=kind,
        sender=sender,
        batch=batch,
        text=text,
        customers=size,
        status=TaskStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(task)
    session.flush()
    return task


def create_tasks(
    session: Session,
    run: CampaignRun,
    *,
    text_for: TextFor,
    batch_max: int | None,
    now: datetime,
    by_staff: bool = True,
) -> int:
    """Create one task per staff member (split past `batch_max` customers); return how many.

    Each task's deliveries become `queued` with its task_id; a delivery with nobody to
    reach the customer is `failed` at once. Without `by_staff` (webhook) the whole
    treatment is split into batches with sender "".
    """
    groups = _groups(session, run.id, by_staff)
    orphans = groups.pop(None, [])
    if orphans:
        session.execute(
            update(CampaignDelivery)
            .where(
                CampaignDelivery.run_id == run.id,
                CampaignDelivery.customer_id.in_(orphans),
            )
            .values(status=DeliveryStatus.FAILED)
        )
    made = 0
    for sender, customer_ids in sorted(groups.items(), key=lambda kv: kv[0] or ""):
        if sender is None:
            continue
        size = batch_max or len(customer_ids)
        for batch, start in enumerate(range(0, len(customer_ids), size)):
            chunk = customer_ids[start : start + size]
            task = new_task(
                session,
                run,
                kind=run.action,
                sender=sender,
                batch=batch,
                text=text_for(sender),
                size=len(chunk),
                now=now,
            )
            # Customer ids are sorted within a sender: a batch is a contiguous id range.
            session.execute(
                update(CampaignDelivery)
                .where(
                    CampaignDelivery.run_id == run.id,
                    CampaignDelivery.arm == "treatment",
                    CampaignDelivery.status == DeliveryStatus.PLANNED,
                    *([CampaignDelivery.staff_userid == sender] if by_staff else []),
                    CampaignDelivery.customer_id.between(chunk[0], chunk[-1]),
                )
                .values(status=DeliveryStatus.QUEUED, task_id=task.id)
            )
            made += 1
    return made


def staff_texts(text: str, names: Mapping[str, str]) -> TextFor:
    """Return the text per sender with `{staff}` filled (other braces stay as written)."""
    return lambda sender: text.replace("{staff}", names.get(sender, sender))

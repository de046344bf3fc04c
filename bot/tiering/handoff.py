"""The one place a re-tier hands its assignments to the tier push (tags in WeCom).

After a writing run the tier tags are ensured in WeCom and the diff of desired against
actual relation tags is queued in the outbox (`bot.tags.push.enqueue_tier_push`): one
mark_tag per changed relation, drained by the outbox workers or `tagbot push`. When WeCom
cannot be reached the tiers stay recorded and nothing is lost: the next run, or
`tagbot push --tiers`, queues the same diff. The built-in tier alerts
(bot.outreach.tier_alerts: a 高价值 customer entering 沉睡客户 or 流失预警) are queued first:
they need only the database.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bot.errors import WeComError
from bot.outreach.tier_alerts import queue_tier_alerts
from bot.runtime import Runtime
from bot.tags.push import enqueue_tier_push

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Handoff:
    """What the hand-off queued; `queued` is None when WeCom could not be reached."""

    queued: int | None  # changed relations queued (one mark_tag each)
    error: str = ""
    alerts: int = 0  # tier alerts queued for staff


def queue_tier_push(rt: Runtime, *, customer_ids: Sequence[int] | None = None) -> Handoff:
    """Queue the tier tags of the current assignments for WeCom (the push's diff).

    A touched run passes its customers: only their relations are diffed.
    """
    try:
        # A touched run leaves removed dimensions (a scan of every assignment) to full runs.
        plan = enqueue_tier_push(rt, customer_ids=customer_ids, find_dropped=customer_ids is None)
    except WeComError as exc:
        log.warning("tier push not queued (WeCom: %s); tiers are recorded", exc)
        return Handoff(queued=None, error=str(exc))
    return Handoff(queued=plan.diff.changed)


def hand_off(rt: Runtime, *, customer_ids: Sequence[int] | None = None) -> Handoff:
    """Queue what a writing run hands on: the tier alerts for staff, then the tier push."""
    alerts = queue_tier_alerts(rt)
    return replace(queue_tier_push(rt, customer_ids=customer_ids), alerts=alerts)

"""Built-in tier alerts: a 高价值 customer entering 沉睡客户 or 流失预警 alerts their staff.

No customer message: each of the customer's active staff gets one app message with the
suggested action, 「高价值客户 张三 进入沉睡，建议电话回访」, queued through
bot.staff_alerts (merged per member under WeCom's limit) with the dedup key
`tier:<transition id>:<userid>`, so an entry alerts once even when the hand-off runs twice.

The names are the default tiers' and are resolved from config: the value dimension is the
first dimension with a tier tagged 高价值 (the default `value`; 高价值会员 in `preference`
is another tag); the alert tiers are tiers tagged 沉睡客户 or 流失预警 in any other
dimension (the default `lifecycle` and `churn`). A config without them has no alerts.

An entry is a transition into an alert tier that the customer still holds, while their
value tier is 高价值 now, recorded within LOOKBACK (so a crash between a run and its
hand-off is caught up by the next run). A customer's first classification is not an entry:
a transition in the first run that tiered the customer alerts nobody (otherwise a first
run on an old customer base would alert about every customer at once).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import aliased

from bot import staff_alerts
from bot.config import Settings, TieringSettings
from bot.db import Database
from bot.db.models import Customer, FollowRelation, Staff, StaffAlert, TierAssignment
from bot.db.models import TierTransition as T
from bot.db.types import utcnow

log = logging.getLogger(__name__)

VALUE_TIER = "高价值"
# Alert tier -> what the customer did, in the alert's words.
ALERT_TIERS = {"沉睡客户": "进入沉睡", "流失预警": "进入流失预警"}
ACTION = "建议电话回访"
LOOKBACK = timedelta(days=2)  # transitions this recent are checked for a missing alert


@dataclass(frozen=True)
class AlertTiers:
    """Where the names live in this config: the value dimension and the alert tiers."""

    value_dimension: str
    alert_tiers: tuple[tuple[str, str], ...]  # (dimension, tier)


def resolve(tiering: TieringSettings) -> AlertTiers | None:
    """Find the value dimension and the alert tiers in the configured dimensions."""
    value = next(
        (d.name for d in tiering.dimensions if any(t.tag == VALUE_TIER for t in d.tiers)), None
    )
    if value is None:
        return None
    alert = tuple(
        (d.name, t.tag)
        for d in tiering.dimensions
        if d.name != value
        for t in d.tiers
        if t.tag in ALERT_TIERS
    )
    return AlertTiers(value, alert) if alert else None


def alert_text(name: str, tier: str) -> str:
    """Return the alert for one customer entering one alert tier."""
    return f"{VALUE_TIER}客户 {name} {ALERT_TIERS[tier]}，{ACTION}"


def dedup_key(transition_id: int, userid: str) -> str:
    """Return the key an alert for this entry and member is queued under once."""
    return f"tier:{transition_id}:{userid}"


def queue_tier_alerts(
    *,
    db: Database,
    settings: Settings,
    alerts_wakeup: threading.Event,
    now: datetime | None = None,
) -> int:
    """Queue the alerts for recent entries not alerted yet; return how many were queued."""
    if not settings.outreach.tier_alerts:
        return 0
    names = resolve(settings.tiering)
    if names is None:
        return 0
    since = (now or utcnow()) - LOOKBACK
    current = aliased(TierAssignment)
    value = aliased(TierAssignment)
    earlier = aliased(T)
    query = (
        select(T.id, T.to_tier, Customer.name, Customer.external_userid, Staff.userid)
        .join(
            current,
            and_(
                current.customer_id == T.customer_id,
                current.dimension == T.dimension,
                current.tier == T.to_tier,
            ),
        )
        .join(
            value,
            and_(
                value.customer_id == T.customer_id,
                value.dimension == names.value_dimension,
                value.tier == VALUE_TIER,
            ),
        )
        .join(Customer, Customer.id == T.customer_id)
        .join(FollowRelation, FollowRelation.customer_id == T.customer_id)
        .join(Staff, Staff.id == FollowRelation.staff_id)
        .where(
            T.at >= since,
            or_(*(and_(T.dimension == d, T.to_tier == t) for d, t in names.alert_tiers)),
            FollowRelation.status == "active",
            Staff.active.is_(True),
            exists().where(earlier.customer_id == T.customer_id, earlier.run_id < T.run_id),
        )
        .order_by(T.id, Staff.userid)
    )
    with db.read() as session:
        rows = session.execute(query).all()
        keys = [dedup_key(r.id, r.userid) for r in rows]
        seen = set(
            session.scalars(select(StaffAlert.dedup_key).where(StaffAlert.dedup_key.in_(keys)))
        )
    fresh = [(r, k) for r, k in zip(rows, keys, strict=True) if k not in seen]
    if not fresh:
        return 0
    queued = 0
    with db.write() as session:
        for row, key in fresh:
            name = row.name or row.external_userid
            queued += staff_alerts.enqueue(
                session,
                userid=row.userid,
                kind=staff_alerts.TIER_ALERT,
                subject=f"{name} {ALERT_TIERS[row.to_tier]}",
                text=alert_text(name, row.to_tier),
                dedup_key=key,
            )
    alerts_wakeup.set()
    log.info("tier alerts: %d queued", queued)
    return queued

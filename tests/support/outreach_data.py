"""Campaign runs, deliveries and orders written straight into the database, for the uplift report.

`synthetic_run` draws customers into arms and orders with a known treatment effect from a
seeded generator, so a test knows the true conversion and revenue lifts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import insert, select

from bot.db import Database
from bot.db.models import Campaign, CampaignRun, Customer, Order
from tests.support.deliveries import Delivery, add_deliveries

AS_OF = datetime(2026, 9, 1, 2, 0, tzinfo=UTC)
# Orders per buyer (1 or 2, mean 1.3) and amount per order (50-250 yuan, mean 150).
P_SECOND_ORDER = 0.3
AMOUNTS = (50, 250)
MEAN_REVENUE_PER_BUYER = (1 + P_SECOND_ORDER) * sum(AMOUNTS) / 2


def campaign(db: Database, name: str, *, action: str = "group_message") -> int:
    """Create a campaigns row and return its id."""
    with db.write() as s:
        row = Campaign(name=name, action=action, dimension="价值分层")
        s.add(row)
        s.flush()
        return row.id


def run(db: Database, campaign_id: int, as_of: datetime, *, status: str = "done") -> int:
    """Record a run of the campaign and return its id."""
    with db.write() as s:
        row = CampaignRun(campaign_id=campaign_id, action="group_message", as_of=as_of)
        row.status = status
        s.add(row)
        s.flush()
        return row.id


def customers(db: Database, count: int, *, prefix: str = "wm_syn") -> list[int]:
    """Create `count` customers and return their ids in order."""
    names = [f"{prefix}_{i:06d}" for i in range(count)]
    with db.write() as s:
        s.execute(insert(Customer), [{"external_userid": n, "name": n} for n in names])
    with db.read() as s:
        ids: dict[str, int] = dict(
            s.execute(
                select(Customer.external_userid, Customer.id).where(
                    Customer.external_userid.like(f"{prefix}\\_%", escape="\\")
                )
            ).all()
        )
    return [ids[n] for n in names]


_order_seq = iter(range(1, 10**9))


def orders(db: Database, rows: list[tuple[int, float, datetime, str]]) -> None:
    """Record orders as (customer_id, amount in yuan, paid_at, status)."""
    if not rows:
        return
    with db.write() as s:
        s.execute(
            insert(Order),
            [
                {
                    "order_id": f"o{next(_order_seq):09d}",
                    "customer_id": c,
                    "amount": Decimal(str(amount)),
                    "paid_at": paid_at,
                    "status": status,
                }
                for c, amount, paid_at, status in rows
            ],
        )


@dataclass(frozen=True)
class Truth:
    """What the generator was told: the true lifts, and the arm sizes it drew."""

    conversion_lift: float
    revenue_lift: float
    treatment: int
    holdout: int


def synthetic_run(
    db: Database,
    run_id: int,
    as_of: datetime,
    customer_ids: list[int],
    *,
    base: float,
    effect: float,
    seed: int,
    holdout_share: float = 0.1,
    tier: str = "高价值",
) -> Truth:
    """Record one run's deliveries and the 30 days of orders after it, with a known effect.

    Each customer buys within 30 days with probability `base` (+ `effect` when treated);
    buyers place 1 or 2 orders of 50-250 yuan at uniform times in the window. Noise the
    report must ignore: refunded orders inside the window and paid orders before the run.
    """
    rng = random.Random(seed)
    delivered: list[Delivery] = []
    bought: list[tuple[int, float, datetime, str]] = []
    for c in customer_ids:
        arm = "holdout" if rng.random() < holdout_share else "treatment"
        status = "holdout" if arm == "holdout" else rng.choice(("sent", "sent", "unconfirmed"))
        staff = None if arm == "holdout" else "zhangsan"
        delivered.append(Delivery(c, status, arm, tier=tier, staff_userid=staff))
        if rng.random() < base + (effect if arm == "treatment" else 0.0):
            for _ in range(2 if rng.random() < P_SECOND_ORDER else 1):
                when = as_of + timedelta(seconds=rng.randint(1, 30 * 86400))
                bought.append((c, float(rng.randint(*AMOUNTS)), when, "paid"))
        if rng.random() < 0.03:
            when = as_of + timedelta(days=rng.randint(1, 29))
            bought.append((c, 999.0, when, "refunded"))
        if rng.random() < 0.05:
            bought.append((c, 500.0, as_of - timedelta(days=rng.randint(1, 60)), "paid"))
    with db.write() as s:
        add_deliveries(s, run_id, delivered)
    orders(db, bought)
    holdout = sum(1 for d in delivered if d.arm == "holdout")
    return Truth(
        conversion_lift=effect,
        revenue_lift=effect * MEAN_REVENUE_PER_BUYER,
        treatment=len(delivered) - holdout,
        holdout=holdout,
    )

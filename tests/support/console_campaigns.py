"""A measured campaign run for the console's 效果评估 and ROI tests: arms, tiers, orders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bot.db import Database
from bot.db.models import Customer, Order
from tests.support.deliveries import Delivery, add_deliveries, campaign_run

# Per tier: (treatment spend per customer, holdout spend per customer), 40 each arm.
SPEND = {
    "高价值": ([100.0] * 12 + [0.0] * 28, [100.0] * 6 + [0.0] * 34),
    "普通": ([50.0] * 10 + [20.0] * 10 + [0.0] * 20, [50.0] * 8 + [0.0] * 32),
}
REACHED = {"高价值": 30, "普通": 36}  # treatment customers WeCom delivered to


def seed_measured_run(db: Database, name: str) -> None:
    """A sent run 40 days ago: 40 + 40 customers per tier, their 30-day orders."""
    as_of = datetime.now(UTC) - timedelta(days=40)
    with db.write() as s:
        run = campaign_run(s, name, status="done", as_of=as_of)
        deliveries: list[Delivery] = []
        for tier, (treated, held) in SPEND.items():
            for arm, spends in (("treatment", treated), ("holdout", held)):
                for i, yuan in enumerate(spends):
                    c = Customer(external_userid=f"roi_{run.id}_{tier}_{arm}_{i}", name="")
                    s.add(c)
                    s.flush()
                    reached = arm == "treatment" and i < REACHED[tier]
                    status = (
                        "sent" if reached else ("holdout" if arm == "holdout" else "unconfirmed")
                    )
                    staff = "zhang" if arm == "treatment" else None
                    deliveries.append(Delivery(c.id, status, arm, tier=tier, staff_userid=staff))
                    if yuan:
                        s.add(
                            Order(
                                order_id=f"roi-{c.external_userid}",
                                customer_id=c.id,
                                external_userid=c.external_userid,
                                amount=Decimal(str(yuan)),
                                paid_at=as_of + timedelta(days=3),
                                status="paid",
                            )
                        )
        add_deliveries(s, run.id, deliveries)

"""Hand-built customers, relations, tiers and campaign configs for the outreach tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.models import (
    Base,
    Customer,
    FollowRelation,
    Order,
    RetierRun,
    Staff,
    TierAssignment,
    TierTransition,
)
from bot.runtime import Runtime
from tests.support.configs import settings_for, toml_text
from tests.support.corp import base_config
from tests.support.tiers import VALUE
from wecom_sim import Simulator

# 12:00 on 2026-06-15 in Shanghai.
AS_OF = datetime(2026, 6, 15, 4, 0, tzinfo=UTC)

LIFECYCLE = {
    "name": "lifecycle",
    "tag_group": "生命周期",
    "tiers": [
        {"tag": "新客户", "when": "days_since_first_order <= 90"},
        {"tag": "沉睡客户", "when": "days_since_last_order > 180"},
    ],
}
CATEGORY = {"name": "category", "tag_group": "品类偏好", "tag_from": "top_category_365d"}
DIMENSIONS = [VALUE, LIFECYCLE, CATEGORY]

_seq = count(1)


def campaign(name: str, **keys: Any) -> dict[str, Any]:
    """A campaign config: 群发 to 高价值 members with no holdout unless keys say otherwise."""
    base: dict[str, Any] = {
        "name": name,
        "action": "group_message",
        "dimension": "value",
        "tiers": ["高价值"],
        "holdout_pct": 0,
        "text": "{staff}为您准备了会员专属礼遇",
    }
    base.update(keys)
    if "on_enter" in keys:
        base.pop("tiers")
    return base


def outreach_runtime(
    db_url: str, sim: Simulator, *campaigns: dict[str, Any], **outreach: Any
) -> Runtime:
    """A Runtime on the simulator with the test dimensions and these campaigns."""
    return Runtime(
        settings_for(
            db_url,
            sim,
            tiering={"dimensions": DIMENSIONS},
            outreach={"campaigns": list(campaigns), "quiet_hours": "", **outreach},
        )
    )


def _toml_value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _table(header: str, values: dict[str, Any]) -> list[str]:
    lines = [header]
    lines += [
        f"{k} = {_toml_value(v)}"
        for k, v in values.items()
        if not isinstance(v, list) or not v or not isinstance(v[0], dict)
    ]
    return lines


def config_text(
    db_url: str,
    campaigns: Sequence[dict[str, Any]],
    *,
    api_base: str = "http://127.0.0.1:9/cgi-bin/",
    dimensions: Sequence[dict[str, Any]] = DIMENSIONS,
) -> str:
    """A whole config.toml: the base sections, the dimensions and the campaigns."""
    data = base_config(db_url, api_base=api_base)
    data["app"] = {"log_level": "WARNING"}
    lines = [toml_text(data), '[outreach]\nquiet_hours = ""']
    for dim in dimensions:
        lines += _table("[[tiering.dimensions]]", dim)
        for tier in dim.get("tiers", []):
            lines += _table("[[tiering.dimensions.tiers]]", tier)
    for c in campaigns:
        lines += _table("[[outreach.campaigns]]", c)
    return "\n".join(lines) + "\n"


def staff(session: Session, userid: str, *, active: bool = True) -> Staff:
    """Add a staff member."""
    s = Staff(userid=userid, active=active)
    session.add(s)
    session.flush()
    return s


def customer(session: Session, ext: str, name: str = "") -> Customer:
    """Add a customer."""
    c = Customer(external_userid=ext, name=name)
    session.add(c)
    session.flush()
    return c


def relation(
    session: Session, c: Customer, s: Staff, *, days_ago: int, status: str = "active"
) -> None:
    """Add a relation of `c` with `s`, added `days_ago` days before AS_OF."""
    session.add(
        FollowRelation(
            customer_id=c.id,
            staff_id=s.id,
            status=status,
            added_at=AS_OF - timedelta(days=days_ago),
        )
    )


def order(session: Session, c: Customer, yuan: int, *, days_ago: int, category: str = "") -> None:
    """Add a paid order of `c`."""
    session.add(
        Order(
            order_id=f"o{next(_seq)}",
            customer_id=c.id,
            external_userid=c.external_userid,
            amount=Decimal(yuan),
            paid_at=AS_OF - timedelta(days=days_ago),
            status="paid",
            category=category,
        )
    )


def assign(session: Session, c: Customer, dimension: str, tier: str) -> None:
    """Set the customer's current tier of a dimension."""
    session.add(TierAssignment(customer_id=c.id, dimension=dimension, tier=tier, since=AS_OF))


def retier_run(session: Session, *, scope: str = "full") -> int:
    """Add a finished re-tier run row and return its id."""
    run = RetierRun(as_of=AS_OF, scope=scope, dry_run=False, finished_at=AS_OF)
    session.add(run)
    session.flush()
    return run.id


def enter(session: Session, c: Customer, dimension: str, tier: str | None, *, run_id: int) -> None:
    """Record a move of `c` into `tier` (None: out of the dimension) and update the tier."""
    current = session.scalar(
        select(TierAssignment).where(
            TierAssignment.customer_id == c.id, TierAssignment.dimension == dimension
        )
    )
    session.add(
        TierTransition(
            customer_id=c.id,
            dimension=dimension,
            from_tier=current.tier if current else None,
            to_tier=tier,
            run_id=run_id,
            as_of=AS_OF,
        )
    )
    if tier is None:
        if current is not None:
            session.delete(current)
    elif current is None:
        assign(session, c, dimension, tier)
    else:
        current.tier = tier
    session.flush()


def bulk_members(
    db: Database, n: int, *, tier: str = "高价值", staff_userid: str = "zhang"
) -> list[str]:
    """Add n customers in `tier` of value, each followed by one staff member; return ids."""
    exts = [f"wm_bulk_{i:05d}" for i in range(n)]
    with db.write() as session:
        member = staff(session, staff_userid)
        session.execute(insert(Customer), [{"external_userid": e, "name": ""} for e in exts])
        ids = dict(session.execute(select(Customer.external_userid, Customer.id)).all())
        session.execute(
            insert(FollowRelation),
            [
                {
                    "customer_id": ids[e],
                    "staff_id": member.id,
                    "status": "active",
                    "added_at": AS_OF,
                }
                for e in exts
            ],
        )
        session.execute(
            insert(TierAssignment),
            [
                {"customer_id": ids[e], "dimension": "value", "tier": tier, "since": AS_OF}
                for e in exts
            ],
        )
    return exts


def table_counts(db: Database) -> dict[str, int]:
    """Rows per table (to show a dry run wrote nothing)."""
    with db.read() as s:
        return {
            t.name: int(s.scalar(select(func.count()).select_from(t)) or 0)
            for t in Base.metadata.sorted_tables
        }

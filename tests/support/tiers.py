"""Tier dimensions, assignments and tag names for the tier push tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from bot.db.models import Customer, TierAssignment
from bot.runtime import Runtime
from bot.sync import run_sync
from bot.tiering.defaults import default_tiers_text
from tests.support.configs import settings_for, toml_text
from tests.support.corp import base_config
from wecom_sim import Simulator

VALUE = {
    "name": "value",
    "tag_group": "价值分层",
    "tiers": [
        {"tag": "高价值", "when": "spend_365d >= 5000"},
        {"tag": "中价值", "when": "spend_365d >= 1000"},
        {"tag": "低价值", "when": "orders_total >= 1"},
    ],
}
ACTIVITY = {
    "name": "activity",
    "tag_group": "活跃度",
    "tiers": [
        {"tag": "活跃", "when": "interactions_30d >= 3"},
        {"tag": "沉睡", "when": "days_since_last_interaction > 90"},
    ],
}


def tier_runtime(db_url: str, sim: Simulator, *dims: dict[str, Any]) -> Runtime:
    """A Runtime on the simulator with these tier dimensions."""
    return Runtime(settings_for(db_url, sim, tiering={"dimensions": list(dims)}))


def synced_tier_runtime(db_url: str, sim: Simulator, *dims: dict[str, Any]) -> Runtime:
    """A tier_runtime with the simulator's members and customers synced in."""
    rt = tier_runtime(db_url, sim, *dims)
    run_sync(db=rt.db, wecom=rt.wecom)
    return rt


def two_member_corp(sim: Simulator, prefix: str, customers: int) -> list[str]:
    """Add alice with `customers` customers and bob sharing the first; return their ids."""
    sim.add_staff("alice", "Alice")
    sim.add_staff("bob", "Bob")
    ids = [sim.add_relation("alice", f"{prefix}{i}") for i in range(customers)]
    sim.add_relation("bob", ids[0])
    return ids


def mark_tag_calls(sim: Simulator) -> int:
    """How many mark_tag calls the simulator has answered."""
    return sim.calls.get("externalcontact/mark_tag", 0)


def assign_tiers(rt: Runtime, tiers: dict[str, dict[str, str | None]]) -> None:
    """Set tier_assignments: external_userid -> {dimension: tier or None}."""
    with rt.db.write() as session:
        ids: dict[str, int] = dict(
            session.execute(select(Customer.external_userid, Customer.id)).all()
        )
        for ext, by_dim in tiers.items():
            for dim, tier in by_dim.items():
                session.execute(
                    delete(TierAssignment).where(
                        TierAssignment.customer_id == ids[ext], TierAssignment.dimension == dim
                    )
                )
                if tier is not None:
                    session.add(TierAssignment(customer_id=ids[ext], dimension=dim, tier=tier))


def relation_tag_names(sim: Simulator, userid: str, ext: str) -> set[str]:
    """The simulator's tags on one relation, as 组名/标签名."""
    by_id = {
        tag_id: f"{group}/{name}"
        for group, tags in sim.tag_catalogue().items()
        for name, tag_id in tags.items()
    }
    return {by_id[t] for t in sim.relation_tags(userid, ext)}


def default_tiers_config(tmp_path: Path, db_url: str, api_base: str | None = None) -> Path:
    """Write config.toml on this database (and simulator) with the default dimensions."""
    data = base_config(db_url) if api_base is None else base_config(db_url, api_base=api_base)
    data["app"] = {"log_level": "WARNING"}
    path = tmp_path / "config.toml"
    path.write_text(toml_text(data) + "[tiering]\n" + default_tiers_text(), encoding="utf-8")
    return path

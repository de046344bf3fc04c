"""Measure the tier diff: queuing the first push, an unchanged rerun and a 10% change.

    python -m bench.tier_diff [--relations 100000] [--database-url URL]

Loads customers, one relation each (every tenth customer a second one), two dimensions
of tier_assignments and the tier tags straight into a fresh database (load time printed
apart), then times `diff.enqueue_tier_changes` three times: everything new (one
operation per relation), unchanged (nothing queued), and after 10% of customers move.
The diff makes no WeCom call, so none is needed here.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.migrate import upgrade_to_head
from bot.db.models import (
    Customer,
    FollowRelation,
    OutboxOperation,
    Staff,
    Tag,
    TagGroup,
    TierAssignment,
)
from bot.tags import diff
from bot.tags.tier_tags import TierDimension

DIMS = (
    TierDimension("value", "价值分层", ("高价值", "中价值", "低价值")),
    TierDimension("activity", "活跃度", ("核心", "活跃", "沉睡")),
)
BATCH = 20_000


def insert_tier_tags(s: Session, dims: Sequence[TierDimension], *, prefix: str) -> None:
    """Put the dimensions' tier tags in the catalogue as if the bot had made them in WeCom."""
    for gi, dim in enumerate(dims):
        made = s.execute(
            insert(TagGroup).values(name=dim.group, wecom_group_id=f"{prefix}g{gi}", managed=True)
        )
        gid = cast("CursorResult[Any]", made).inserted_primary_key
        assert gid is not None
        for ti, tier in enumerate(dim.tiers):
            s.execute(
                insert(Tag).values(
                    group_id=gid[0],
                    name=tier,
                    wecom_tag_id=f"{prefix}t{gi}_{ti}",
                    managed=True,
                    order=dim.order_of(tier),
                )
            )


def load(db: Database, relations: int, seed: int = 3) -> None:
    """Insert staff, customers, relations, the tier tags and tier assignments."""
    rnd = random.Random(seed)
    customers = max(1, relations * 10 // 11)
    with db.write() as s:
        s.execute(insert(Staff), [{"userid": f"u{i:03d}", "name": ""} for i in range(50)])
        insert_tier_tags(s, DIMS, prefix="")
    rows = [{"external_userid": f"wm{c:09d}"} for c in range(customers)]
    with db.write() as s:
        for i in range(0, len(rows), BATCH):
            s.execute(insert(Customer), rows[i : i + BATCH])
    rel = [{"staff_id": c % 50 + 1, "customer_id": c + 1} for c in range(customers)]
    rel += [
        {"staff_id": (c + 7) % 50 + 1, "customer_id": c + 1}
        for c in range(0, customers, 10)
        if len(rel) < relations
    ][: relations - len(rel)]
    tiers = []
    for c in range(customers):
        value = rnd.choices([None, *DIMS[0].tiers], weights=[40, 5, 20, 35])[0]
        if value:
            tiers.append({"customer_id": c + 1, "dimension": "value", "tier": value})
        tiers.append(
            {"customer_id": c + 1, "dimension": "activity", "tier": rnd.choice(DIMS[1].tiers)}
        )
    with db.write() as s:
        for i in range(0, len(rel), BATCH):
            s.execute(insert(FollowRelation), rel[i : i + BATCH])
        for i in range(0, len(tiers), BATCH):
            s.execute(insert(TierAssignment), tiers[i : i + BATCH])


def _analyze(db: Database) -> None:
    """Refresh PostgreSQL's statistics, as autovacuum would soon after a bulk load."""
    if not db.is_sqlite:
        with db.engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()


def mark_sent(db: Database) -> None:
    """Record every queued operation as sent, the way the outbox does after WeCom's ok."""
    with db.write() as s:
        s.execute(
            text(
                "INSERT INTO relation_tags (relation_id, tag_id, synced_at) "
                "SELECT r.id, c.tag_id, CURRENT_TIMESTAMP FROM outbox_tag_changes c "
                "JOIN outbox_operations o ON o.id = c.operation_id "
                "JOIN staff s ON s.userid = o.staff_userid "
                "JOIN customers cu ON cu.external_userid = o.external_userid "
                "JOIN follow_relations r ON r.staff_id = s.id AND r.customer_id = cu.id "
                "WHERE c.action = 'add'"
            )
        )
        s.execute(update(OutboxOperation).values(status="done"))
    _analyze(db)


def _ops(db: Database) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(OutboxOperation)) or 0


def run(url: str, relations: int) -> None:
    db = Database(url)
    upgrade_to_head(db.engine)
    t0 = time.perf_counter()
    load(db, relations)
    _analyze(db)
    print(f"load: {time.perf_counter() - t0:.1f}s")

    first = diff.enqueue_tier_changes(db=db, dims=DIMS)
    print(
        f"first diff (all new): {first.seconds:.2f}s, {first.relations} relations, "
        f"{first.changed} changed, {first.new_operations} operations, "
        f"{first.relations / first.seconds:,.0f} relations/s"
    )
    mark_sent(db)  # the push would now send them
    again = diff.enqueue_tier_changes(db=db, dims=DIMS)
    print(f"unchanged rerun: {again.seconds:.2f}s, {again.changed} changed")
    with db.write() as s:
        s.execute(
            update(TierAssignment)
            .where(TierAssignment.dimension == "activity", TierAssignment.customer_id % 10 == 0)
            .values(tier="核心")
        )
    before = _ops(db)
    moved = diff.enqueue_tier_changes(db=db, dims=DIMS)
    print(
        f"10% moved: {moved.seconds:.2f}s, {moved.changed} changed, "
        f"{_ops(db) - before} new operations"
    )
    db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relations", type=int, default=100_000)
    parser.add_argument("--database-url", help="an EMPTY database (default: temporary SQLite)")
    args = parser.parse_args()
    if args.database_url:
        run(args.database_url, args.relations)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{Path(tmp) / 'bench.db'}", args.relations)


if __name__ == "__main__":
    main()

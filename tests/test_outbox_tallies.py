"""The outbox's tallies equal a recount of the outbox after every kind of write.

Enqueue and merge, a bulk insert across id blocks, claims (and a stale claim taken over),
done, a retry, a dead letter, the give-back of a stopping worker, replays (queued again,
or closed as superseded), deletes: after each, the counter rows the pages read
(bot/tags/tallies.py) say what counting the operations says, everywhere and for every
push range. The writes are the real ones, against the WeCom simulator.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, insert, select, text, update

from bot.db import Database
from bot.db.models import OutboxOperation, OutboxTally
from bot.db.types import utcnow
from bot.reports import operations, system
from bot.runtime import Runtime
from bot.states import OutboxStatus
from bot.tags import catalogue, outbox, tallies
from bot.tags.replay import replay_dead
from tests.support.configs import settings_for
from wecom_sim import Simulator

MARK = "externalcontact/mark_tag"
EVERY = tuple(str(s) for s in OutboxStatus)


@pytest.fixture
def rt(db_url: str, simulator: Simulator) -> Iterator[Runtime]:
    simulator.add_staff("alice", "Alice")
    runtime = Runtime(settings_for(db_url, simulator))
    yield runtime
    runtime.close()


def _recount(db: Database, since: int | None = None) -> dict[str, int]:
    op = OutboxOperation
    query = select(op.status, func.count()).group_by(op.status)
    if since is not None:
        query = query.where(op.id > since)
    with db.read() as s:
        found = {st: int(n) for st, n in s.execute(query)}
    return {st: found.get(st, 0) for st in EVERY}


def _check(db: Database) -> dict[str, int]:
    """Assert the tallies equal a recount, everywhere and after every id boundary."""
    every = _recount(db)
    with db.read() as s:
        ids = [int(i) for i in s.scalars(select(OutboxOperation.id))]
        assert tallies.totals(session=s) == every
        assert outbox.counts(session=s) == every
        sinces = {0, 1, tallies.BLOCK - 1, tallies.BLOCK, 3 * tallies.BLOCK}
        sinces |= set(ids) | {i - 1 for i in ids}
        for since in sorted(sinces):
            assert tallies.after(since, session=s) == _recount(db, since), since
        got = operations.outbox_counts(session=s, push_from=min(ids, default=1))
        assert got.everywhere == {st: every[st] for st in operations.OPEN}
        assert system.outbox_view(session=s).counts == got.everywhere
    return every


def _queue(rt: Runtime, simulator: Simulator, n: int) -> int:
    exts = [simulator.add_relation("alice", name=f"客户{i}") for i in range(n)]
    (tag_id,) = catalogue.ensure(db=rt.db, wecom=rt.wecom, paths=[catalogue.TagPath("兴趣", "茶")])
    with rt.db.write() as session:
        for ext in exts:
            outbox.enqueue_tag_ids(
                session=session, staff_userid="alice", external_userid=ext, add=[tag_id], priority=0
            )
        # A second change to the first relation merges into its pending operation.
        outbox.enqueue_tag_ids(
            session=session, staff_userid="alice", external_userid=exts[0], add=[tag_id]
        )
    return tag_id


def test_tallies_follow_every_write_of_the_outbox(rt: Runtime, simulator: Simulator) -> None:
    db = rt.db
    assert _check(db) == dict.fromkeys(EVERY, 0)
    tag_id = _queue(rt, simulator, 6)
    assert _check(db)["pending"] == 6

    # Claimed, then held past the claim deadline (its worker died) and taken over.
    now = utcnow()
    with db.write() as s:
        first = outbox.claim(s, limit=2, now=now)
    assert _check(db)["in_flight"] == 2
    with db.write() as s:
        again = outbox.claim(s, limit=1, now=now + timedelta(seconds=outbox.CLAIM_SECONDS + 1))
    assert [op.id for op in again] == [first[0].id]
    assert _check(db)["in_flight"] == 2

    # A stopping worker puts its claims back untried.
    stopping = threading.Event()
    stopping.set()
    assert outbox.drain(db=db, wecom=rt.wecom, limit=3, stopping=stopping) == 0
    counts = _check(db)
    assert (counts["pending"], counts["in_flight"]) == (4, 2)  # the first two still held

    # A retry (worth trying later), two dead letters (not a friend any more), done.
    simulator.inject_fault(MARK, errcode=41063, count=1)
    assert outbox.drain(db=db, wecom=rt.wecom, limit=1) == 1
    counts = _check(db)
    assert (counts["pending"], counts["done"] + counts["dead"]) == (4, 0)
    simulator.inject_fault(MARK, errcode=outbox.NOT_A_FRIEND, count=2)
    assert outbox.drain(db=db, wecom=rt.wecom, limit=2) == 2
    assert _check(db)["dead"] == 2
    # Later, the two claims held since the start are abandoned: taken over and sent.
    later = lambda: utcnow() + timedelta(seconds=3 * outbox.CLAIM_SECONDS)  # noqa: E731
    assert outbox.drain(db=db, wecom=rt.wecom, limit=2, now=later) == 2
    counts = _check(db)
    assert (counts["in_flight"], counts["done"]) == (0, 2)

    # Replays: a dead letter queued again, and one closed because a later write covers it.
    with db.read() as s:
        dead = list(
            s.execute(
                select(OutboxOperation.id, OutboxOperation.external_userid)
                .where(OutboxOperation.status == "dead")
                .order_by(OutboxOperation.id)
            )
        )
    with db.write() as s:
        assert replay_dead(dead[0][0], session=s).status == "pending"
    assert _check(db)["dead"] == 1
    with db.write() as s:
        outbox.enqueue_tag_ids(
            session=s, staff_userid="alice", external_userid=dead[1][1], add=[tag_id]
        )
    assert _check(db)["pending"] == 4
    with db.write() as s:
        assert replay_dead(dead[1][0], session=s).status == "done"
    assert _check(db)["dead"] == 0

    # A crash: a write rolled back leaves the tallies as they were.
    before = _check(db)
    with pytest.raises(RuntimeError), db.write() as s:
        s.execute(update(OutboxOperation).values(status="dead"))
        raise RuntimeError("crash")
    assert _check(db) == before

    # Deleted operations leave the tallies too.
    with db.write() as s:
        s.execute(delete(OutboxOperation).where(OutboxOperation.status == "done"))
    assert _check(db)["done"] == 0


def test_a_bulk_insert_across_id_blocks_is_counted_per_block(db: Database) -> None:
    """A push's range starts anywhere in a block: whole blocks from their rows, the rest by id."""
    b = tallies.BLOCK
    ids = [b - 2, b - 1, b, b + 1, 2 * b - 1, 2 * b, 5 * b + 7, 5 * b + 8]
    statuses = ["pending", "done", "dead", "in_flight", "pending", "done", "pending", "dead"]
    with db.write() as s:
        s.execute(
            insert(OutboxOperation),
            [
                {"id": i, "kind": "mark_tag", "status": st, "next_attempt_at": utcnow()}
                for i, st in zip(ids, statuses, strict=True)
            ],
        )
    _check(db)
    # One statement moving rows of several blocks and statuses at once (a push marked sent).
    with db.write() as s:
        s.execute(update(OutboxOperation).where(OutboxOperation.id >= b).values(status="done"))
    assert _check(db) == {"pending": 1, "in_flight": 0, "done": 7, "dead": 0}


def test_postgresql_writers_add_into_their_own_shard(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: one shard")
    db = Database(db_url)
    try:
        with db.write() as s:
            pid = int(s.scalar(text("SELECT pg_backend_pid()")) or 0)
            s.execute(insert(OutboxOperation).values(kind="mark_tag", status="pending"))
        with db.read() as s:
            shards = set(s.scalars(select(OutboxTally.shard)))
        assert shards == {pid % tallies.SHARDS}
    finally:
        db.dispose()

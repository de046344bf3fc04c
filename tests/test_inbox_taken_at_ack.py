"""The ack claims a new event for its own workers in its INSERT: order and takeover kept."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from bot import leases
from bot.callbacks import inbox
from bot.db import Database
from bot.db.models import InboxEvent, Lease
from bot.db.types import utcnow
from bot.states import InboxStatus
from bot.wecom.events import parse_event
from wecom_sim import Simulator

_ALIVE = 3600.0


def _xml(simulator: Simulator, customer: str, change: str = "add_external_contact") -> str:
    return simulator.event_xml(
        "change_external_contact",
        change,
        {"UserID": "alice", "ExternalUserID": customer, "State": "s"},
    )


def _row(db: Database, event_id: int) -> tuple[str, str | None, int]:
    with db.read() as session:
        row = session.execute(
            select(InboxEvent.status, InboxEvent.owner, InboxEvent.attempts).where(
                InboxEvent.id == event_id
            )
        ).one()
    return row.status, row.owner, row.attempts


def test_the_ack_stores_times_as_every_other_write_does(db_url: str, simulator: Simulator) -> None:
    db = Database(db_url)
    if not db.is_sqlite:
        db.dispose()
        pytest.skip("SQLite keeps times as text; PostgreSQL as timestamptz")
    try:
        with db.write_driver() as txn:
            first = inbox.store(
                parse_event(_xml(simulator, "wmTaken0001")),
                "x",
                txn=txn,
                owner="beat:owner",
                take=True,
            )
        assert isinstance(first, inbox.Claimed)
        with db.read() as session:
            # Stored as every other time is (the claim's deadline compares as text).
            stored = session.execute(
                text("SELECT received_at, locked_until FROM inbox_events WHERE id = :id"),
                {"id": first.id},
            ).one()
        deadline = first.received_at + timedelta(seconds=inbox.CLAIM_SECONDS)
        assert stored.received_at == first.received_at.replace(tzinfo=None).isoformat(
            " ", "microseconds"
        )
        assert stored.locked_until == deadline.replace(tzinfo=None).isoformat(" ", "microseconds")
    finally:
        db.dispose()


def test_concurrent_acks_of_one_relation_claim_only_the_first(
    db_url: str, simulator: Simulator
) -> None:
    """The second ack waits for the first one's commit, then sees its event unfinished.

    On PostgreSQL concurrent inserts cannot see each other: without the relation's lock
    both acks would claim, and two workers could run one relation's events out of order.
    """
    db = Database(db_url)
    second_event = parse_event(_xml(simulator, "wmTaken0005", "del_follow_user"))
    results: list[inbox.Claimed | int | None] = []
    try:
        with db.write_driver() as txn:
            first = inbox.store(
                parse_event(_xml(simulator, "wmTaken0005")),
                "x",
                txn=txn,
                owner="beat:owner",
                take=True,
            )

            def ack() -> None:
                with db.write_driver() as other:
                    results.append(
                        inbox.store(second_event, "y", txn=other, owner="beat:owner", take=True)
                    )

            thread = threading.Thread(target=ack)
            thread.start()
            thread.join(0.5)
            assert results == []  # waiting for the first ack's commit
        thread.join(30)
        assert isinstance(first, inbox.Claimed)
        [second] = results
        assert isinstance(second, int)
        assert _row(db, second) == (InboxStatus.PENDING, "beat:owner", 0)
    finally:
        db.dispose()


def test_the_ack_claims_a_new_event_unless_an_earlier_one_of_its_relation_is_unfinished(
    db_url: str, simulator: Simulator
) -> None:
    db = Database(db_url)
    other_event = parse_event(_xml(simulator, "wmTaken0002"))
    try:
        with db.write() as session:
            leases.try_acquire("beat:owner", "beat:owner", _ALIVE, session=session)
        with db.write_driver() as txn:
            first = inbox.store(
                parse_event(_xml(simulator, "wmTaken0001")),
                "x",
                txn=txn,
                owner="beat:owner",
                take=True,
            )
            second = inbox.store(
                parse_event(_xml(simulator, "wmTaken0001", "edit_external_contact")),
                "y",
                txn=txn,
                owner="beat:owner",
                take=True,
            )
            other = inbox.store(other_event, "z", txn=txn, owner="beat:owner", take=True)
        assert isinstance(first, inbox.Claimed)
        assert isinstance(other, inbox.Claimed)
        assert (first.payload, first.change_type, first.attempts) == (
            "x",
            "add_external_contact",
            1,
        )
        # An earlier event of its relation is being processed: it waits, pending, to be
        # claimed in order once that one is done.
        assert isinstance(second, int)
        assert _row(db, second) == (InboxStatus.PENDING, "beat:owner", 0)
        with db.write() as session:
            assert inbox.claim(session=session, owner="beat:owner", ids=[second]) == []
            inbox.finish(first, session=session)
        with db.write() as session:
            claimed = inbox.claim(session=session, owner="beat:owner", ids=[second])
            assert [c.id for c in claimed] == [second]
        with db.write_driver() as txn:
            # A re-delivery of an event the ack claimed stays a duplicate while it runs.
            assert inbox.store(other_event, "z", txn=txn, owner="beat:owner", take=True) is None
    finally:
        db.dispose()


def test_a_claim_made_by_the_ack_is_renewed_after_a_wait_unless_another_process_took_it(
    db_url: str, simulator: Simulator
) -> None:
    db = Database(db_url)
    try:
        with db.write() as session:
            leases.try_acquire("beat:owner", "beat:owner", _ALIVE, session=session)
            leases.try_acquire("beat:other", "beat:other", _ALIVE, session=session)
        with db.write_driver() as txn:
            kept = inbox.store(
                parse_event(_xml(simulator, "wmTaken0003")),
                "x",
                txn=txn,
                owner="beat:owner",
                take=True,
            )
            lost = inbox.store(
                parse_event(_xml(simulator, "wmTaken0004")),
                "y",
                txn=txn,
                owner="beat:owner",
                take=True,
            )
        assert isinstance(kept, inbox.Claimed)
        assert isinstance(lost, inbox.Claimed)
        assert not inbox.aged([kept, lost])  # fresh: processed without a write
        with db.write() as session:
            # Others leave them alone while the owner beats.
            assert inbox.claim(session=session, owner="beat:other", limit=10) == []
            # The owner's heartbeat lapses (a stalled process): the other takes one over.
            session.execute(
                update(Lease)
                .where(Lease.name == "beat:owner")
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
        with db.write() as session:
            taken = inbox.claim(session=session, owner="beat:other", limit=1)
            assert [c.id for c in taken] == [kept.id]
            leases.try_acquire(
                "beat:owner", "beat:owner", _ALIVE, session=session
            )  # it beats again
        waited = [
            dataclasses.replace(c, received_at=c.received_at - timedelta(seconds=2))
            for c in (kept, lost)
        ]
        assert inbox.aged(waited)
        with db.write() as session:
            # The owner's workers get to them late: only the one still theirs is processed.
            assert [c.id for c in inbox.retake(waited, session=session, owner="beat:owner")] == [
                lost.id
            ]
        assert _row(db, kept.id) == (InboxStatus.PROCESSING, "beat:other", 2)
        assert _row(db, lost.id) == (InboxStatus.PROCESSING, "beat:owner", 1)
    finally:
        db.dispose()

"""The outbox's tallies: operations per status, read as a sum over a few counter rows.

Counting the outbox by status reads every open operation: while a night's push is pending
that is the whole push (273–288 ms at 1 M customers for 概览's one pass, ~350 ms for 系统's
grouped count). `outbox_tallies` keeps the counts instead, written by triggers on
`outbox_operations` (migration fba930ec07ce) in the transaction of every statement that
inserts, updates or deletes operations. Triggers rather than a call in each writer: every
writer is covered whatever it is (an enqueue, a merge, a claim, a stale claim taken over,
done, a retry, a dead letter, a replay, the give-back on a graceful stop, a bulk update by
a tool or a test), a crash rolls the counts back with the rows, and the scan's hot path
sends no statement more (it writes no outbox row unless the direct call failed; then the
insert's trigger runs inside that insert).

Rows, keyed (block, status, shard):
- block -1: every operation; block b: the operations with ids in [b * BLOCK, (b + 1) *
  BLOCK). A push's range (ids after a run's `outbox_from`) is its whole blocks' rows plus
  an exact count of at most BLOCK - 1 ids by primary key, for the block it starts in.
- shard: on PostgreSQL the writer's backend pid modulo SHARDS, so concurrent outbox
  workers add into different rows, not one hot counter (two connections whose pids agree
  modulo SHARDS share rows: one waits for the other's commit); each trigger adds in key
  order. SQLite has one writer at a time: shard 0. A shard's row may go below zero (an
  operation queued by one connection, sent by another): only the sum means anything.
A PostgreSQL statement trigger adds a whole statement's rows at once (a push's bulk
insert: one grouped pass over its transition table, one upsert); SQLite's row triggers
add one operation each.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from bot.db.models import OutboxOperation, OutboxTally
from bot.states import OutboxStatus

BLOCK = 16384  # the migration's triggers divide ids by the same
SHARDS = 16  # concurrent writers a push sees: outbox worker threads of a few processes
EVERY = -1  # the block of the rows counting every operation


def _sum(where: ColumnElement[bool], *, session: Session) -> dict[str, int]:
    out = dict.fromkeys((str(s) for s in OutboxStatus), 0)
    t = OutboxTally
    for status, n in session.execute(
        select(t.status, func.sum(t.operations)).where(where).group_by(t.status)
    ):
        out[status] = out.get(status, 0) + int(n or 0)
    return out


def totals(*, session: Session) -> dict[str, int]:
    """Return how many operations are in each status (every status, done included)."""
    return _sum(OutboxTally.block == EVERY, session=session)


def after(since_id: int, *, session: Session) -> dict[str, int]:
    """Return how many operations with ids above `since_id` are in each status."""
    if since_id <= 0:
        return totals(session=session)  # ids start at 1
    first = since_id // BLOCK + 1  # the first block wholly above since_id
    out = _sum(OutboxTally.block >= first, session=session)
    op = OutboxOperation
    for status, n in session.execute(
        select(op.status, func.count())
        .where(op.id > since_id, op.id < first * BLOCK)
        .group_by(op.status)
    ):
        out[status] = out.get(status, 0) + int(n)
    return out

"""Per-run aggregates the console reads: each run's moves and the tier sizes after it.

Written in the transaction that finishes a (not dry) run, from what the run already
counted in DuckDB, so the re-tier pays a few dozen rows, never a pass over customers:
- `tier_run_moves`: the run's from → to counts per dimension (None = 无), as `moves`.
- `channel_tier_mix` (渠道质量, bot/tiering/channel_mix.py): a full run recounts it
  (one grouped pass over relations and assignments), a touched run applies its moves.
- `tier_size_days`: the sizes after the run, rewritten for the run's as_of local day. A
  full run counted every customer (`sizes`); a touched run takes the previous run's
  sizes and applies its moves (one out of `from_tier`, one into `to_tier`). When the
  previous run left no sizes (the first run, a run cut short before it finished, a
  dimension new in config) the sizes are counted from `tier_assignments` once instead,
  which the run has finished writing by then: exact either way.
Each measured dimension also gets a row with tier "" (0 customers), so a dimension
whose tiers are all empty is told apart from one never measured.
`retier_runs.outbox_from` keeps the last outbox operation's id as the run finishes: the
push it hands off queues after it, so its progress is counted over that id range only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from bot.db.models import OutboxOperation, RetierRun, TierAssignment, TierRunMove, TierSizeDay
from bot.tiering import channel_mix
from bot.tiering.evaluate import Move

MEASURED = ""  # the tier of the row saying a dimension was measured

Sizes = dict[tuple[str, str], int]  # (dimension, tier) -> customers


def latest_sizes(*, session: Session) -> tuple[int | None, Sizes]:
    """Return the run that wrote the latest sizes and them (MEASURED rows included)."""
    run_id = session.scalar(select(func.max(TierSizeDay.run_id)))
    if run_id is None:
        return None, {}
    rows = session.execute(
        select(TierSizeDay.dimension, TierSizeDay.tier, TierSizeDay.customers).where(
            TierSizeDay.run_id == run_id
        )
    ).all()
    return int(run_id), {(d, t): int(n) for d, t, n in rows}


def _counted(dims: Sequence[str], *, session: Session) -> Sizes:
    """Count the assignments of `dims` per tier (the fallback when no sizes carry over)."""
    rows = session.execute(
        select(TierAssignment.dimension, TierAssignment.tier, func.count())
        .where(TierAssignment.dimension.in_(list(dims)))
        .group_by(TierAssignment.dimension, TierAssignment.tier)
    ).all()
    return {(d, t): int(n) for d, t, n in rows}


def _carried(run_id: int, dims: Sequence[str], moves: Sequence[Move], *, session: Session) -> Sizes:
    """Return the previous run's sizes with this touched run's moves applied."""
    base_run, base = latest_sizes(session=session)
    previous = session.scalar(select(func.max(RetierRun.id)).where(RetierRun.id < run_id))
    fresh = base_run is None or base_run != previous
    missing = [d for d in dims if fresh or (d, MEASURED) not in base]
    sizes: Sizes = {k: v for k, v in base.items() if k[0] in dims and k[0] not in missing}
    for m in moves:
        if m.dimension in missing:
            continue
        if m.from_tier is not None:
            sizes[(m.dimension, m.from_tier)] = (
                sizes.get((m.dimension, m.from_tier), 0) - m.customers
            )
        if m.to_tier is not None:
            sizes[(m.dimension, m.to_tier)] = sizes.get((m.dimension, m.to_tier), 0) + m.customers
    if missing:
        sizes.update(_counted(missing, session=session))
    return sizes


def record(
    *,
    session: Session,
    run_id: int,
    as_of: datetime,
    tz: str,
    dims: Sequence[str],
    full: bool,
    moves: Sequence[Move],
    sizes: Sequence[Move],
) -> None:
    """Write the run's moves and the sizes after it (in the run's finishing transaction)."""
    session.execute(
        update(RetierRun)
        .where(RetierRun.id == run_id)
        .values(
            outbox_from=select(func.coalesce(func.max(OutboxOperation.id), 0)).scalar_subquery()
        )
    )
    if moves:
        session.execute(
            insert(TierRunMove),
            [
                {
                    "run_id": run_id,
                    "dimension": m.dimension,
                    "from_tier": m.from_tier,
                    "to_tier": m.to_tier,
                    "customers": m.customers,
                }
                for m in moves
            ],
        )
    if full:
        after: Sizes = {(s.dimension, str(s.to_tier)): s.customers for s in sizes}
    else:
        after = _carried(run_id, dims, moves, session=session)
    for d in dims:
        after[(d, MEASURED)] = 0
    day = as_of.astimezone(ZoneInfo(tz)).date()
    session.execute(delete(TierSizeDay).where(TierSizeDay.day == day))
    session.execute(
        insert(TierSizeDay),
        [
            {"day": day, "dimension": d, "tier": t, "customers": n, "run_id": run_id}
            for (d, t), n in sorted(after.items())
            if n > 0 or t == MEASURED
        ],
    )
    if full:
        channel_mix.write(channel_mix.count(session=session), session=session)
    else:
        channel_mix.apply_run(run_id, session=session)

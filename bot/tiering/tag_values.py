"""The tags tag_from dimensions' customers hold: what a touched run's fold is measured by.

A touched run gives a value someone already holds its tag, and a new value a tag of its own
while the dimension has room under max_tags (`evaluate`); whether someone holds 其他 is part
of the answer, since 其他 takes one of the max_tags slots only when it is held. Who holds what is a scan of all
tier_assignments (seconds at a million customers), too much per batch of touched customers,
so the long-lived engine keeps the answer (`KeptValues`): valid while the latest recorded
run is the one it was taken at, brought forward by each run recorded through that engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb
from sqlalchemy import func, select

from bot.db import Database
from bot.db.models import RetierRun, TierAssignment
from bot.rules import Dimension, TagFromDimension
from bot.tiering.evaluate import TIERS, tier_column


@dataclass
class KeptValues:
    """Held tags per tag_from dimension (values, and 其他 when held), as of run `run_id`."""

    run_id: int | None = None
    values: dict[str, set[str]] = field(default_factory=dict)


def tag_from_dims(dims: Sequence[Dimension]) -> list[TagFromDimension]:
    """Return the dimensions that take their tag from a value."""
    return [d for d in dims if isinstance(d, TagFromDimension)]


def _latest_run(db: Database) -> int | None:
    with db.read() as session:
        return session.scalar(select(func.max(RetierRun.id)))


def current(
    db: Database, dims: Sequence[TagFromDimension], kept: KeptValues
) -> dict[str, list[str]]:
    """Return the tags held per dimension now: the kept ones, or read when out of date."""
    if not dims:
        return {}
    latest = _latest_run(db)
    names = [d.name for d in dims]
    if latest is None or kept.run_id != latest or not set(names) <= set(kept.values):
        with db.read() as session:
            rows = session.execute(
                select(TierAssignment.dimension, TierAssignment.tier)
                .where(TierAssignment.dimension.in_(names))
                .distinct()
            ).all()
        kept.values = {n: set() for n in names}
        for dim, tier in rows:
            kept.values[dim].add(tier)
        kept.run_id = latest
    return {n: sorted(kept.values[n]) for n in names}


def remember(
    kept: KeptValues,
    con: duckdb.DuckDBPyConnection,
    dims: Sequence[TagFromDimension],
    *,
    run_id: int,
    full: bool,
) -> None:
    """Bring the kept values forward to the run just recorded from this run's `tiers`.

    A full run's values are everyone's; a touched run adds its customers' (a value a touched
    customer left stays known until the next full run: at worst it keeps a tag a little longer).
    """
    if not full and kept.run_id is None:
        return  # nothing kept to bring forward: the next run reads them
    held: dict[str, set[str]] = {d.name: set() for d in dims}
    for dim in dims:
        col = tier_column(dim.name)
        rows = con.execute(f"SELECT DISTINCT {col} FROM {TIERS} WHERE {col} IS NOT NULL").fetchall()
        held[dim.name] = {str(r[0]) for r in rows}
    if full:
        kept.values = held
    else:
        for name, values in held.items():
            kept.values.setdefault(name, set()).update(values)
    kept.run_id = run_id

"""The re-tier run: one as_of, metrics, every dimension in order, the diff, the history.

`retier()` computes the metrics (all customers, or `customer_ids` for a touched run),
evaluates the configured dimensions in DuckDB against the current assignments, and —
unless `dry_run` — records each change in `tier_transitions`, upserts `tier_assignments`
(`since` = as_of on entering a tier) and writes a `retier_runs` row with the counts; a
full run stores its rank population as it finishes, a touched run its customers' rows of
it (`bot.tiering.population`).
A dry run writes nothing. Queuing the tier tags for WeCom is the caller's next step
(`bot.retier`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.models import RetierRun
from bot.errors import StoppedError, ValidationError
from bot.rules import Dimension
from bot.tiering import evaluate, history, metrics_predictive, run_stats, tag_values
from bot.tiering.clock import Clock
from bot.tiering.engine import MetricsEngine
from bot.tiering.evaluate import Move

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class RetierReport:
    """What one run found (and, unless dry, recorded)."""

    as_of: datetime
    scope: str  # "full" | "touched"
    dry_run: bool
    customers: int = 0
    changed_customers: int = 0
    transitions: int = 0
    relations_to_mark: int = 0  # active relations of changed customers: mark_tag calls at most
    moves: list[Move] = field(default_factory=list)
    sizes: list[Move] = field(default_factory=list)  # tier sizes after the run (its customers)
    run_id: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    # The predictive model its metrics came from: fitted (full run) or reused (touched).
    model: metrics_predictive.Model | None = None
    # Rules naming a customer group no live group has (renamed, dismissed, a typo): such a
    # rule is false for everyone, so the run says so rather than emptying a tier silently.
    warnings: list[str] = field(default_factory=list)


def retier(
    db: Database,
    dims: Sequence[Dimension],
    *,
    tz: str,
    as_of: datetime | None = None,
    dry_run: bool = False,
    customer_ids: Iterable[int] | None = None,
    engine: MetricsEngine | None = None,
    on_progress: ProgressFn | None = None,
    stop: threading.Event | None = None,
    read_from: Database | None = None,
) -> RetierReport:
    """Re-tier every customer (or `customer_ids`) as of `as_of` (default: now).

    `stop` (the process stopping) ends the run at its next safe point with StoppedError:
    before anything is written, or between the record's chunks, each consistent on its
    own (bot.tiering.history); the next run diffs against them and does the rest.
    `read_from` (a replica of `db`, caught up) is read instead of `db` by an engine made here.
    """
    as_of = as_of or datetime.now(UTC)
    if as_of.tzinfo is None:
        raise ValidationError("as_of must be an aware datetime")
    ids = None if customer_ids is None else sorted({int(i) for i in customer_ids})
    scope = "full" if ids is None else "touched"
    report = RetierReport(as_of=as_of, scope=scope, dry_run=dry_run)
    own = engine is None
    eng = engine or MetricsEngine(db, tz=tz, source=read_from)
    t0 = time.perf_counter()
    try:
        frame = eng.compute(as_of=as_of, customer_ids=ids)
        try:
            _check(stop, "after the metrics")
            t1 = time.perf_counter()
            report.seconds["metrics"] = t1 - t0
            report.model = frame.model
            con, source = frame.con, eng.source
            assert source is not None
            evaluate.load_current(con, source, clock=Clock(tz, as_of), ids=ids)
            tag_dims = tag_values.tag_from_dims(dims)
            known = None if ids is None else tag_values.current(db, tag_dims, eng.kept_values)
            evaluate.evaluate(con, dims, known=known)
            evaluate.diff(con, dims)
            report.customers = frame.count()
            report.moves = evaluate.moves(con)
            report.sizes = evaluate.tier_sizes(con, dims)
            report.transitions = sum(m.customers for m in report.moves)
            report.changed_customers = evaluate.changed_customers(con)
            report.relations_to_mark = evaluate.relations_to_mark(con, source, ids=ids)
            t2 = time.perf_counter()
            report.seconds["evaluate"] = t2 - t1
            if dry_run:
                return report
            _check(stop, "before recording")
            report.run_id = history.start_run(db, as_of=as_of, scope=scope)
            done = 0

            def step(n: int) -> None:
                nonlocal done
                done += n
                if on_progress is not None:
                    on_progress("record", done, report.transitions)
                _check(stop, f"after {done} of {report.transitions} changes")

            history.record_changes(db, con, run_id=report.run_id, as_of=as_of, on_progress=step)
            tag_values.remember(
                eng.kept_values, con, tag_dims, run_id=report.run_id, full=ids is None
            )
            run_id = report.run_id
            history.finish_run(
                db,
                run_id,
                customers=report.customers,
                transitions=report.transitions,
                changed_customers=report.changed_customers,
                operations=report.relations_to_mark,
                also=lambda s: _finish(eng, report, dims, session=s, tz=tz, run_id=run_id, ids=ids),
            )
            report.seconds["record"] = time.perf_counter() - t2
            return report
        finally:
            frame.close()
    finally:
        if own:
            eng.close()


def _check(stop: threading.Event | None, where: str) -> None:
    if stop is not None and stop.is_set():
        raise StoppedError(f"re-tier stopped {where}")


def _finish(
    eng: MetricsEngine,
    report: RetierReport,
    dims: Sequence[Dimension],
    *,
    session: Session,
    tz: str,
    run_id: int,
    ids: list[int] | None,
) -> None:
    """Write what finishes a run with its row: the population, the console's aggregates."""
    # A run cut short leaves the previous population: it is still that run's.
    if ids is None:
        eng.store_population(session, run_id=run_id)
        if report.model is not None:
            report.model.run_id = run_id
            session.execute(
                update(RetierRun)
                .where(RetierRun.id == run_id)
                .values(predictive=report.model.to_json())
            )
    else:
        eng.store_touched(session, ids)
    run_stats.record(
        session=session,
        run_id=run_id,
        as_of=report.as_of,
        tz=tz,
        dims=[d.name for d in dims],
        full=ids is None,
        moves=report.moves,
        sizes=report.sizes,
    )

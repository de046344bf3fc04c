"""Why a customer holds each tier: the stored tier and since when, the rule, the values.

Metrics are computed now for that one customer; each dimension is explained with its
stored tier as the current one (so `stay` and the dwell read as a run would read them),
in config order, later rules seeing the tiers the earlier ones give.

The customer's own metrics read only their rows, but R/M scores and the spend percentile
rank them among every buyer. On the day of a full run that population is the one the run
stored (`bot.tiering.population`), so an explanation costs the customer's rows and the
stored population's, and gives the full run's answer. The day-population job
(`bot.tiering.day_population`, scheduled right after local midnight) stores the day's for
every process before the nightly run. On a day without one yet (local midnight to that
job, a failed one) the day's would be a pass over all orders, which no request makes: the
customer is ranked against the newest stored population (its days since the last order
shifted to today) and each explained dimension that ranks says which day's 客户总体
(`TierView.rank_note`). A serving process keeps one `ExplainEngine` whose population is
loaded once per local day and reused, the way a touched re-tier ranks against the kept
population (so the answer is the one a touched run of this customer gives), and builds
the day's in a background thread only when none is stored some time after the job's hour
(no scheduler, the job off or failed); a one-shot command (`tagbot customer show`) loads
it each time. Once the population is
there, a request reads the customer's rows by index and ranks them by binary search in
the population's values, sorted once per kept population (`rank_index.RankIndex`).

Explained as of now, not as of the run that stored the tier: the page says what a run
would give now ("数据已变化" when it differs), as `customer show` and the API do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select

from bot.background_task import BackgroundTask, Cancel
from bot.customers.contacts import get_customer
from bot.db import Database
from bot.db.models import TierAssignment, TierTransition
from bot.rules import Dimension, explain_dimension
from bot.rules.evaluate import value_of
from bot.rules.explain import format_value
from bot.tiering.clock import Clock
from bot.tiering.engine import EngineLimits, MetricsEngine, compute_metrics
from bot.tiering.metrics_predictive import COLUMNS as PREDICTIVE
from bot.tiering.metrics_predictive import INPUTS as PREDICTIVE_INPUTS
from bot.tiering.metrics_predictive import Model

log = logging.getLogger(__name__)

# From how long after the day-population job's time a process builds the day's itself.
FALLBACK_GRACE = timedelta(minutes=30)
# An explanation computes one customer's few rows in ~40 small statements: one DuckDB
# thread does it in less time and CPU than two, whose hand-offs cost more than the work
# (100 k customers on PostgreSQL: 450 vs 570-680 ms, 80-100 vs 105 ms CPU on a loaded
# machine). The background population build (every order) keeps the default threads.
EXPLAIN_THREADS = 1
EXPLAIN_LIMITS = EngineLimits(threads=EXPLAIN_THREADS)

# Metrics that rank a customer among the day's buyers (`metrics_orders.ranks`).
RANKED = frozenset({"spend_percentile_365d", "r_score", "m_score", "clv_percentile"})


@dataclass(frozen=True)
class TierView:
    """One dimension for one customer, as `customer show` and the API show it."""

    dimension: str
    tag_group: str
    tier: str | None  # stored by the last run
    since: datetime | None
    now: str | None  # what a run would give now (differs when the data changed since)
    lines: tuple[str, ...]  # the explanation, Chinese
    reason: str  # how the tier was reached (the end of the first line), Chinese
    metrics: dict[str, Any]  # the values its rules read
    # Which day's 客户总体 its ranked metrics count against, when not today's (Chinese; "").
    rank_note: str = ""


@dataclass(frozen=True)
class Explained:
    """One customer's metrics, the model they were scored with, and their rank basis's day."""

    row: dict[str, Any]
    model: Model | None
    population_day: date | None  # the local day whose buyers the ranks count among


class ExplainEngine:
    """The metrics engine a process keeps for explanations (`Runtime.explain`; thread-safe).

    Built on first use. Its population (the rank basis) is the day's kept or stored one;
    on a day none is stored for yet (local midnight to the day-population job or the
    nightly run, a failed one) a request ranks against the newest stored one instead,
    never a pass over every order. The day's population is stored once a day by the
    scheduler's job (`jobs.tiering.POPULATION_JOB`), which every process then loads. As a
    fallback (no scheduler, or its run missed or failed) the day's population is built
    once in a background thread, then used by the requests after it — at once when
    `schedule` is None (no job), else only from `grace` after the job's time that day.
    Only with nothing stored at all (before the first full run: small data) does a
    request build it.
    """

    def __init__(
        self,
        *,
        background: bool = True,
        schedule: str | None = None,
        grace: timedelta = FALLBACK_GRACE,
    ) -> None:
        self._lock = threading.Lock()
        self._engine: MetricsEngine | None = None
        self._db: Database | None = None
        self._background = background
        self._schedule = schedule
        self._grace = grace
        # The fallback's build, once per database, zone and day (`bot.background_task`).
        self._task: BackgroundTask[tuple[MetricsEngine, Database]] = BackgroundTask(
            "explain-population", dispose=lambda got: got[0].close()
        )
        self.request_builds = 0  # passes over every order made while answering a request
        self.transactions = 0  # explanations computed as one DuckDB transaction (tests count)
        self.background_builds = 0  # made by the background thread

    def metrics(
        self, db: Database, *, tz: str, as_of: datetime, customer_id: int
    ) -> dict[str, Any]:
        """Return one customer's metrics as of `as_of` (empty when there is no such customer)."""
        return self.explain_row(db, tz=tz, as_of=as_of, customer_id=customer_id).row

    def explain_row(self, db: Database, *, tz: str, as_of: datetime, customer_id: int) -> Explained:
        """Return one customer's metrics, model and rank basis's day (see the class)."""
        with self._lock:
            self._install()
            if self._engine is None or self._db is not db or self._engine.tz != tz:
                self._close()
                self._engine, self._db = MetricsEngine(db, tz=tz, limits=EXPLAIN_LIMITS), db
            engine = self._engine
            builds, transactions = engine.population_builds, engine.transactions
            try:
                with engine.compute(
                    as_of=as_of, customer_ids=[customer_id], stale_ok=True
                ) as frame:
                    got = Explained(
                        frame.rows().get(customer_id, {}), frame.model, frame.population_day
                    )
            except BaseException:
                self._close()  # a fresh engine next time, not a half-built one
                raise
            finally:
                self.request_builds += engine.population_builds - builds
                self.transactions += engine.transactions - transactions
        day = Clock(tz, as_of).as_of_day
        if got.population_day is not None and got.population_day != day:
            self._build_later(db, tz=tz, as_of=as_of)
        return got

    def fallback_from(self, tz: str, day: date) -> datetime:
        """Return when this process builds `day`'s population itself if none is stored."""
        midnight = datetime.combine(day, dtime(), tzinfo=ZoneInfo(tz))
        if self._schedule is None:
            return midnight
        trigger = CronTrigger.from_crontab(self._schedule, timezone=ZoneInfo(tz))
        first = trigger.get_next_fire_time(None, midnight)
        return (first or midnight) + self._grace

    @property
    def threads(self) -> int | None:
        """The DuckDB threads explanations run on now (None: no engine yet)."""
        with self._lock:
            if self._engine is None:
                return None
            row = self._engine.con.execute("SELECT current_setting('threads')").fetchone()
            return None if row is None else int(row[0])

    def _build_later(self, db: Database, *, tz: str, as_of: datetime) -> None:
        """Start the day's population build in a thread, once per database, zone and day.

        Not before `fallback_from`: till then the scheduled job is expected to store it.
        """
        day = Clock(tz, as_of).as_of_day
        if not self._background or as_of < self.fallback_from(tz, day):
            return

        def build(cancel: Cancel) -> tuple[MetricsEngine, Database]:
            engine = MetricsEngine(db, tz=tz)
            cancel.on_cancel(engine.con.interrupt)
            t0 = time.perf_counter()
            try:
                engine.build_population(as_of=as_of)
            except BaseException:
                engine.close()
                raise
            log.info(
                "explanations' rank population for %s built in %.1fs",
                day,
                time.perf_counter() - t0,
            )
            with self._lock:
                self.background_builds += engine.population_builds
            return engine, db

        self._task.start(build, key=(id(db), tz, day))

    def _install(self) -> None:
        """Keep the background build's engine, if one finished (the lock held)."""
        done = self._task.take()
        if done is None or done.result is None:
            return  # none finished, or it failed (logged): the stored population serves
        engine, db = done.result
        if self._db is not None and self._db is not db:
            engine.close()
            return
        engine.con.execute(f"SET GLOBAL threads = {EXPLAIN_THREADS}")  # built: now explain
        self._close()
        self._engine, self._db = engine, db

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background build begun, if any; say whether none is running."""
        return self._task.wait(timeout)

    def _close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._engine = self._db = None

    def close(self) -> None:
        """Close the engine; interrupt a background build and wait for it (bounded)."""
        self._task.close()
        with self._lock:
            self._close()


def _days(clock: Clock, since: datetime) -> int:
    return (clock.as_of_day - Clock(clock.tz, since).as_of_day).days


def explain_customer(
    db: Database,
    dims: Sequence[Dimension],
    *,
    customer_id: int,
    tz: str,
    as_of: datetime | None = None,
    engine: ExplainEngine | None = None,
) -> list[TierView]:
    """Explain every dimension for one customer as of `as_of` (default now).

    With `engine` (a serving process's), the ranks come from its kept population.
    """
    if not dims:
        return []
    as_of = as_of or datetime.now(UTC)
    with db.read() as session:
        stored = {
            a.dimension: (a.tier, a.since)
            for a in session.scalars(
                select(TierAssignment).where(TierAssignment.customer_id == customer_id)
            )
        }
        # The tier each dimension's latest move came from (for a tier entered today).
        came_from = {
            dim_name: (from_tier, to_tier)
            for dim_name, from_tier, to_tier in session.execute(
                select(TierTransition.dimension, TierTransition.from_tier, TierTransition.to_tier)
                .where(TierTransition.customer_id == customer_id)
                .order_by(TierTransition.at, TierTransition.id)
            )
        }
    if engine is not None:
        got = engine.explain_row(db, tz=tz, as_of=as_of, customer_id=customer_id)
    else:
        with compute_metrics(
            db, as_of=as_of, tz=tz, customer_ids=[customer_id], stale_ok=True
        ) as frame:
            got = Explained(frame.rows().get(customer_id, {}), frame.model, frame.population_day)
    row, model = got.row, got.model
    clock = Clock(tz, as_of)
    basis = got.population_day
    views: list[TierView] = []
    for dim in dims:
        tier, since = stored.get(dim.name, (None, None))
        since_days = _days(clock, since) if since is not None else None
        before, moved_to = came_from.get(dim.name, (None, None))
        if tier is not None and since_days == 0 and moved_to == tier:
            # Entered today: explain the move from the tier before, by the rule that
            # matched; "kept (stay holds)" would describe tomorrow's run, not today's.
            exp = explain_dimension(dim, row, cur_tier=before, assigned=tier)
            reason = f"今天进入（之前：{before or '无'}）：{exp.reason}"
            lines = [f"{dim.name}：{exp.tag or '无'} — {reason}", *exp.lines[1:]]
        else:
            exp = explain_dimension(
                dim, row, cur_tier=tier, cur_since_days=since_days, assigned=tier
            )
            reason = exp.reason
            lines = list(exp.lines)
        if tier is not None and since is not None:
            lines.insert(
                1,
                f"  当前层级 {tier}，自 {since.astimezone(ZoneInfo(tz)):%Y-%m-%d} 起（{since_days} 天）",
            )
        elif tier is None:
            lines.insert(1, "  当前没有该维度的标签")
        if exp.tag != tier:
            lines.append(
                f"  数据已变化：下次分层将{'变为 ' + exp.tag if exp.tag else '取消该标签'}"
            )
        row[f"tier.{dim.name}"] = exp.tag
        used = sorted(dim.names_used())
        ranked = [n for n in used if n in RANKED]
        rank_note = ""
        if ranked and basis is not None and basis != clock.as_of_day:
            rank_note = (
                f"{'、'.join(ranked)} 按 {basis:%Y-%m-%d} 的客户总体排名（今天的客户总体尚未生成）"
            )
            lines.append(f"  {rank_note}")
        if set(used) & set(PREDICTIVE):
            # The model's inputs beside its outputs, and the fit they came from.
            used += [n for n in PREDICTIVE_INPUTS if n not in used]
            lines.append(
                f"  预测模型：{model.summary(timing=False) if model else '尚无（还没有全量分层拟合）'}"
            )
        views.append(
            TierView(
                dimension=dim.name,
                tag_group=dim.tag_group,
                tier=tier,
                since=since,
                now=exp.tag,
                lines=tuple(lines),
                reason=reason,
                metrics={n: value_of(row, n) for n in used},
                rank_note=rank_note,
            )
        )
    return views


def metric_line(metrics: dict[str, Any]) -> str:
    """Render the values a dimension's rules read: `spend_365d = 1200，orders_365d = 1`."""
    return "，".join(
        f"{k} = {'缺失' if v is None else format_value(v)}" for k, v in metrics.items()
    )


def explain_external(
    db: Database,
    dims: Sequence[Dimension],
    *,
    external_userid: str,
    tz: str,
    as_of: datetime | None = None,
    engine: ExplainEngine | None = None,
) -> list[TierView]:
    """Explain every dimension for the customer with this external_userid (none: [])."""
    with db.read() as session:
        customer = get_customer(external_userid, session=session)
    if customer is None:
        return []
    return explain_customer(db, dims, customer_id=customer.id, tz=tz, as_of=as_of, engine=engine)

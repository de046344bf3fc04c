"""Compute every vocabulary metric per customer in DuckDB over the operational database.

One `as_of` per run. Days are calendar-day differences in the configured zone between
as_of's local day and the event's local day (`ago`); a window of N days holds ago in
[0, N), i.e. the local days (as_of_day - N, as_of_day]. Rows after as_of are ignored.

The engine attaches the bot's SQLite file or PostgreSQL schema read-only, stages the few
columns it needs into DuckDB (paid orders, events, relations, profile attributes, with
`ago` computed once), and derives all metrics in a handful of set-based statements.

R and M scores and spend_percentile_365d rank a customer among all the window's buyers
(orders_365d >= 1). A full run keeps that population (customer, spend, last order) in the
engine, and a recorded full run stores it in the database too (`population`); a touched
run (`customer_ids`) re-reads only those customers' rows and ranks them against the kept
population with their own values replaced (by binary search in its values, sorted once:
`rank_index`) (a recorded one replaces them in the stored
population too, when it is for the run's day and zone). An engine holding none for the
as_of local day and zone loads the stored one when it is for that day and zone (a new
process after the nightly run: its rows, not every order), else builds one (one pass);
an explanation (`compute(stale_ok=True)`, never a re-tier) takes an earlier day's stored
one instead, its days since the last order shifted, and the frame says which day.

On SQLite the engine reads a copy made by the bot's own SQLite (see `source`): a whole
copy for a full run or a population build, and for a touched run with a population kept
or stored a copy of its customers' rows only (with the stored population's rows when it
loads them) — 1,000 customers cost their rows, not the file.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
from sqlalchemy.orm import Session

from bot.db import Database
from bot.errors import ValidationError
from bot.rules.vocabulary import METRICS
from bot.tiering import (
    metrics_events,
    metrics_groups,
    metrics_orders,
    metrics_outreach,
    metrics_predictive,
    metrics_relations,
    population,
)
from bot.tiering.clock import Clock
from bot.tiering.frame import MetricFrame
from bot.tiering.metrics_relations import quote_ident
from bot.tiering.rank_index import MAX_REPLACED, RankIndex, Row
from bot.tiering.source import POPULATION_TABLE, Source, attach, attach_duckdb, reattach
from bot.tiering.tag_values import KeptValues

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineLimits:
    """DuckDB's resources: bounded so a nightly run fits beside the bot's processes."""

    memory_limit: str = "600MB"  # DuckDB's own buffers; it spills to temp_directory beyond
    threads: int = 2
    temp_directory: str | None = None  # None: a private temporary directory


COLUMNS: dict[str, str] = {
    **metrics_orders.COLUMNS,
    **metrics_events.COLUMNS,
    **metrics_relations.COLUMNS,
    **metrics_outreach.COLUMNS,
    **metrics_predictive.COLUMNS,
    **metrics_groups.COLUMNS,
}
missing = [m.name for m in METRICS if m.name not in COLUMNS]
if missing:  # pragma: no cover - the vocabulary and the engine must agree
    raise RuntimeError(f"metrics without SQL: {missing}")


@dataclass
class _Population:
    as_of_day: date
    tz: str
    profile_names: list[str]
    # Its predictive model: the one its clv_365d come from, which its touched runs reuse.
    model: metrics_predictive.Model | None = None
    # An earlier day's stored population standing in for this day's (`compute(stale_ok=)`):
    # that day. Its days since the last order are shifted to this day; spends are that day's.
    basis_day: date | None = None
    # Its values sorted for ranking a few customers by binary search (built on first use;
    # None again whenever the table and the index may disagree).
    index: RankIndex | None = None

    @property
    def day(self) -> date:
        """The local day whose buyers these are."""
        return self.basis_day or self.as_of_day


class MetricsEngine:
    """A DuckDB connection on the bot's database that computes metric frames."""

    def __init__(
        self,
        db: Database | None,
        *,
        tz: str,
        limits: EngineLimits = EngineLimits(),
        source: Database | None = None,
    ) -> None:
        """`source`, a PostgreSQL replica of `db`, is where the data is read from (else `db`)."""
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValidationError(f"unknown time zone: {tz}") from exc
        self.tz = tz
        self._tmp = None
        temp_dir = limits.temp_directory
        if temp_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="tagbot-metrics-")
            temp_dir = self._tmp.name
        # A file database in the spill directory, not :memory:: its tables are compressed
        # and can leave memory, so 10 M staged orders fit under memory_limit.
        self.con = duckdb.connect(
            str(Path(temp_dir) / f"engine-{os.getpid()}-{id(self)}.duckdb"),
            config={
                "memory_limit": limits.memory_limit,
                "threads": limits.threads,
                "preserve_insertion_order": False,
                "temp_directory": temp_dir,
            },
        )
        # Local days come from ICU in this zone; each cursor is a session of its own.
        self.con.execute("SET GLOBAL TimeZone = ?", [tz])
        self._frames = itertools.count(1)
        row = self.con.execute("SELECT current_database()").fetchone()
        assert row is not None
        self.catalog = quote_ident(str(row[0]))
        self._population: _Population | None = None
        # The tag_from values held, kept between touched runs (bot.tiering.tag_values).
        self.kept_values = KeptValues()
        self._db = db
        # Per-engine, so two engines sharing a temp_directory never share a snapshot.
        self._workdir = Path(temp_dir) / f"source-{os.getpid()}-{id(self)}"
        self._workdir.mkdir(parents=True, exist_ok=True)
        # SQLite: each compute takes the snapshot it needs (a whole file or some customers').
        self.source: Source | None = (
            attach(self.con, source or db, workdir=self._workdir)
            if db is not None and not db.is_sqlite
            else None
        )
        self._partial = False  # the attached snapshot holds some customers only
        self.population_builds = 0  # passes over every order for a rank basis (tests count)
        self.transactions = 0  # customer-scoped computes run as one transaction (tests count)

    @classmethod
    def for_duckdb_file(
        cls, path: str, *, tz: str, limits: EngineLimits = EngineLimits()
    ) -> MetricsEngine:
        """Return an engine over a DuckDB file holding the bot's tables (bench comparison)."""
        engine = cls(None, tz=tz, limits=limits)
        engine.source = attach_duckdb(engine.con, path)
        return engine

    def compute(
        self,
        *,
        as_of: datetime,
        customer_ids: Iterable[int] | None = None,
        stale_ok: bool = False,
    ) -> MetricFrame:
        """Compute the metrics of every customer, or of `customer_ids`, as of `as_of`.

        `stale_ok` (explanations only, never a re-tier): with no population kept or stored
        for as_of's day, rank `customer_ids` against the newest stored one of an earlier day
        (`frame.population_day` says which) instead of building the day's from every order.
        """
        if as_of.tzinfo is None:
            raise ValidationError("as_of must be an aware datetime")
        ids = None if customer_ids is None else sorted({int(i) for i in customer_ids})
        stale_ok = stale_ok and ids is not None
        clock = Clock(self.tz, as_of)
        pop = self._population
        if (
            stale_ok
            and pop is not None
            and pop.basis_day is not None
            and self._stored_serves(clock)
        ):
            self._population = None  # the day's own population was stored meanwhile: load it
        if self._db is not None and self._db.is_sqlite:
            # A touched run with a population kept or stored for its day reads a copy of its
            # customers' rows only; anything else a full copy (a build needs every order).
            kept = ids is not None and self._has_population(clock, stale_ok=stale_ok)
            load = ids is not None and not kept and self._stored_usable(clock, stale_ok=stale_ok)
            self._attach_sqlite(ids if kept or load else None, population=load)
        needs = (
            ids is not None
            and self._db is not None
            and not self._has_population(clock, stale_ok=stale_ok)
        )
        if needs and not self._load_population(clock, stale_ok=stale_ok) and self._partial:
            self._attach_sqlite(None)  # replaced meanwhile by another day's: build one
        assert self.source is not None
        schema = f"frame_{next(self._frames)}"
        # Some customers against a population already there (an explanation, a touched
        # run): their ~40 statements in one transaction, not one commit each — each commit
        # writes and syncs the engine file's WAL. Not a full run or a build: their tables
        # are large and are dropped as they go to stay under the memory limit.
        single = ids is not None and self._has_population(clock, stale_ok=stale_ok)
        cur = self.con.cursor()
        try:
            cur.execute("SET TimeZone = ?", [self.tz])
            if single:
                cur.execute("BEGIN TRANSACTION")
                self.transactions += 1
            cur.execute(f"CREATE SCHEMA {schema}")
            cur.execute(f"USE {self.catalog}.{schema}")
            self._run(cur, ids=ids, clock=clock, stale_ok=stale_ok)
            names = self._profile_names(cur)
            if single:
                cur.execute("COMMIT")
        except BaseException:
            if self._population is not None:
                self._population.index = None  # the table may be rolled back or half-changed
            if single:
                cur.execute("ROLLBACK")
            cur.execute(f"USE {self.catalog}.main")
            cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            cur.close()
            raise
        assert self._population is not None
        frame = MetricFrame(cur, schema=schema, as_of=as_of, tz=self.tz, profile_names=names)
        frame.model = self._population.model
        frame.population_day = self._population.day
        return frame

    def build_population(self, *, as_of: datetime) -> None:
        """Build (or load, when stored) the rank population of as_of's local day."""
        clock = Clock(self.tz, as_of)
        if self._has_population(clock):
            return
        if self._db is not None and self._db.is_sqlite:
            self._attach_sqlite(None)
        if self._db is not None and self._load_population(clock):
            return
        self._build_population(clock)

    def _exec(self, cur: duckdb.DuckDBPyConnection, sql: str) -> None:
        """Run one statement, logging its time (the figures behind the engine's design)."""
        t0 = time.perf_counter()
        cur.execute(sql)
        log.debug("metrics step %.2fs: %s", time.perf_counter() - t0, " ".join(sql.split())[:80])

    def _run(
        self,
        cur: duckdb.DuckDBPyConnection,
        *,
        ids: list[int] | None,
        clock: Clock,
        stale_ok: bool = False,
    ) -> None:
        src = self.source
        assert src is not None
        self._exec(cur, metrics_relations.stage_customers(src, ids=ids))
        self._exec(cur, metrics_orders.stage_orders(src, ids=ids, clock=clock))
        for statement in metrics_orders.ORDER_METRICS:
            self._exec(cur, statement)
        self._exec(cur, metrics_orders.TOP_CATEGORY)
        self._exec(cur, metrics_predictive.STAGE)
        self._exec(cur, "DROP TABLE o")
        model = metrics_predictive.fit(cur) if ids is None else None
        self._exec(cur, metrics_outreach.stage_deliveries(src, ids=ids, clock=clock))
        self._exec(cur, metrics_events.stage_events(src, ids=ids, clock=clock))
        self._exec(cur, metrics_groups.stage_stays(src, ids=ids, clock=clock))
        self._exec(cur, metrics_groups.JOINS_AS_EVENTS)
        self._exec(cur, metrics_groups.GROUP_METRICS)
        self._exec(cur, "DROP TABLE g")
        self._exec(cur, metrics_events.EVENT_METRICS)
        self._exec(cur, metrics_outreach.STAGE_CLICKS)
        self._exec(cur, "DROP TABLE e")
        self._exec(cur, metrics_outreach.DELIVERY_METRICS)
        self._exec(cur, "DROP TABLE d")
        self._exec(cur, "DROP TABLE k")
        self._exec(
            cur,
            metrics_relations.stage_relations(src, ids=ids, clock=clock),
        )
        self._exec(cur, metrics_relations.RELATION_METRICS)
        self._exec(cur, "DROP TABLE r")
        self._exec(cur, metrics_relations.stage_profiles(src, ids=ids))
        seen = [r[0] for r in cur.execute("SELECT DISTINCT name FROM p").fetchall()]

        if ids is None:
            self._score(cur, model, fitted=True)
            self._exec(
                cur,
                f"CREATE OR REPLACE TABLE {self.catalog}.main.population AS {metrics_orders.BUYERS}",
            )
            self._population = _Population(clock.as_of_day, self.tz, sorted(seen), model)
            self._exec(
                cur,
                metrics_orders.ranks(f"SELECT * FROM {self.catalog}.main.population", keep=None),
            )
        else:
            if not self._has_population(clock, stale_ok=stale_ok):
                self._build_population(clock)
            assert self._population is not None
            self._score(cur, self._population.model, fitted=False)
            self._population.profile_names = sorted(set(self._population.profile_names) | set(seen))
            self._exec(cur, "CREATE TABLE ids AS SELECT cid FROM c")
            self._rank_touched(cur, self._population)
        names = self._population.profile_names if ids is not None else sorted(seen)
        self._exec(cur, metrics_relations.profile_metrics(names))
        self._exec(cur, "DROP TABLE p")
        select = ",\n".join(f"{COLUMNS[m.name]} AS {quote_ident(m.name)}" for m in METRICS)
        profile = "".join(f", pm.{quote_ident('profile.' + n)}" for n in names)
        self._exec(
            cur,
            f"""
            CREATE TABLE metrics AS
            SELECT c.cid AS customer_id, {select}{profile}, {metrics_groups.NAMES}
            FROM c
            LEFT JOIN om ON om.cid = c.cid
            LEFT JOIN topcat ON topcat.cid = c.cid
            LEFT JOIN ranks ON ranks.cid = c.cid
            LEFT JOIN em ON em.cid = c.cid
            LEFT JOIN rm ON rm.cid = c.cid
            LEFT JOIN pm ON pm.cid = c.cid
            LEFT JOIN dm ON dm.cid = c.cid
            LEFT JOIN pred ON pred.cid = c.cid
            LEFT JOIN gm ON gm.cid = c.cid
        """,
        )
        for table in ("om", "topcat", "ranks", "em", "rm", "pm", "dm", "pred", "gm", "c"):
            self._exec(cur, f"DROP TABLE {table}")
        self._exec(cur, "DROP TABLE IF EXISTS ids")

    def _rank_touched(self, cur: duckdb.DuckDBPyConnection, pop: _Population) -> None:
        """Replace the `ids` customers' rows in the kept population and rank them into `ranks`.

        The counts are `metrics_orders.ranks`' over the population with their rows replaced,
        by binary search in its sorted values (`RankIndex`) instead of windows sorting it or
        a pass counting over it: O(log n) a customer once the index is built (once per kept
        population, or again after `MAX_REPLACED` replaced customers).
        """
        table = f"{self.catalog}.main.population"
        ids = [int(r[0]) for r in cur.execute("SELECT cid FROM ids").fetchall()]
        index = pop.index
        if index is not None and index.replaced + len(ids) > MAX_REPLACED:
            index = None  # sorted anew below: cheaper than that many insertions
        old = (
            {}
            if index is None
            else _rows(cur, f"SELECT {_POP} FROM {table} WHERE cid IN (SELECT cid FROM ids)")
        )
        self._exec(cur, f"DELETE FROM {table} WHERE cid IN (SELECT cid FROM ids)")
        self._exec(cur, f"CREATE TABLE buyers AS {metrics_orders.BUYERS}")
        self._exec(cur, f"INSERT INTO {table} SELECT * FROM buyers")
        new = _rows(cur, f"SELECT {_POP} FROM buyers")
        self._exec(cur, "DROP TABLE buyers")
        if index is None:
            index = RankIndex.from_table(cur, table)
        else:
            for cid in ids:
                index.replace(cid, old.get(cid), new.get(cid))
        pop.index = index
        self._exec(
            cur,
            "CREATE TABLE ranks (cid BIGINT, k_m BIGINT, k_r BIGINT, k_c BIGINT,"
            " n_c BIGINT, n BIGINT)",
        )
        got = index.ranks(sorted(new.items()))
        if got:  # one statement, the columns zipped by unnest
            cur.execute(
                "INSERT INTO ranks SELECT " + ", ".join("unnest(?::BIGINT[])" for _ in range(6)),
                [[getattr(r, f) for r in got] for f in ("cid", "k_m", "k_r", "k_c", "n_c", "n")],
            )

    def _score(
        self,
        cur: duckdb.DuckDBPyConnection,
        model: metrics_predictive.Model | None,
        *,
        fitted: bool,
    ) -> None:
        """Score the staged buyers (`bg`) with `model` into `pred` (`fitted`: just fitted)."""
        metrics_predictive.score(cur, model, timed=fitted)
        self._exec(cur, "DROP TABLE bg")

    def _attach_sqlite(self, ids: list[int] | None, *, population: bool = False) -> None:
        """Attach a new snapshot: the whole file, or `ids`' rows (and the stored population)."""
        assert self._db is not None
        at = reattach if self.source is not None else attach
        self.source = at(
            self.con, self._db, workdir=self._workdir, customer_ids=ids, population=population
        )
        self._partial = ids is not None

    def _stored_serves(self, clock: Clock) -> bool:
        """Whether the database's stored population is for this as_of's local day and zone."""
        return self._stored_usable(clock, stale_ok=False)

    def _stored_usable(self, clock: Clock, *, stale_ok: bool) -> bool:
        """Whether the stored population serves this day (`stale_ok`: or an earlier one's does)."""
        assert self._db is not None
        st = population.stored(self._db)
        return st is not None and _usable(st, clock, self.tz, stale_ok=stale_ok)

    def _load_population(self, clock: Clock, *, stale_ok: bool = False) -> bool:
        """Load the stored population if it is for this local day and zone; say whether.

        `stale_ok`: an earlier day's too, its days since the last order shifted to this day
        and the buyers whose last order has left the 365-day window dropped.
        """
        src = self.source
        assert src is not None
        state = population.state_query(src.table("tier_population_state"))
        cur = self.con.cursor()
        try:
            before = population.parse_state(cur.execute(state).fetchone())
            if before is None or not _usable(before, clock, self.tz, stale_ok=stale_ok):
                return False
            shift = (clock.as_of_day - before.as_of_day).days
            self._population = None  # the table below is no longer the kept one
            cur.execute(f"""
                CREATE OR REPLACE TABLE {self.catalog}.main.population AS
                SELECT * FROM (
                    SELECT CAST(customer_id AS BIGINT) AS cid,
                           CAST(spend_365d AS BIGINT) AS fen_365d,
                           CAST(days_since_last_order AS INTEGER) + {shift} AS last_ago,
                           CAST(clv_365d AS DOUBLE) AS clv
                    FROM {src.table(POPULATION_TABLE)}
                ) WHERE last_ago < 365""")
            # PostgreSQL: a full run committing meanwhile changes the state (run ids grow).
            if population.parse_state(cur.execute(state).fetchone()) != before:
                return False
            assert self._db is not None
            if before.run_id is not None:
                model = metrics_predictive.for_run(self._db, before.run_id)
            elif before.predictive is not None:  # the day-population job's
                model = metrics_predictive.Model.from_json(before.predictive, run_id=None)
            else:
                model = None
            self._population = _Population(
                clock.as_of_day,
                self.tz,
                before.profile_names,
                model,
                basis_day=before.as_of_day if shift else None,
            )
            return True
        finally:
            cur.close()

    def store_population(self, session: Session, *, run_id: int) -> int:
        """Store the population of the full run just computed (`population.store`)."""
        pop = self._population
        assert pop is not None
        return population.store(
            self.con,
            f"SELECT cid, fen_365d, last_ago, clv FROM {self.catalog}.main.population",
            session=session,
            run_id=run_id,
            as_of_day=pop.as_of_day,
            tz=pop.tz,
            profile_names=pop.profile_names,
        )

    def store_day_population(self, session: Session) -> int:
        """Store the population `build_population` just built, with its model; return its size.

        The day-population job's (`bot.tiering.day_population`): no run, so the model goes
        with the state row.
        """
        pop = self._population
        assert pop is not None
        assert pop.basis_day is None
        return population.store(
            self.con,
            f"SELECT cid, fen_365d, last_ago, clv FROM {self.catalog}.main.population",
            session=session,
            run_id=None,
            as_of_day=pop.as_of_day,
            tz=pop.tz,
            profile_names=pop.profile_names,
            predictive=None if pop.model is None else pop.model.to_json(),
        )

    def store_touched(self, session: Session, customer_ids: list[int]) -> bool:
        """Update the stored population's rows of a touched run's customers (`population`)."""
        pop = self._population
        assert pop is not None
        rows = self.con.execute(
            f"SELECT cid, fen_365d, last_ago, clv FROM {self.catalog}.main.population"
            " WHERE cid IN (SELECT unnest(?::BIGINT[])) ORDER BY cid",
            [customer_ids],
        ).fetchall()
        return population.update_touched(
            customer_ids,
            [(int(c), int(f), int(a), None if v is None else float(v)) for c, f, a, v in rows],
            session=session,
            as_of_day=pop.as_of_day,
            tz=pop.tz,
            profile_names=pop.profile_names,
        )

    def _has_population(self, clock: Clock, *, stale_ok: bool = False) -> bool:
        """Whether the kept rank population is for this as_of's local day and zone.

        `stale_ok`: an earlier day's standing in for it counts too.
        """
        pop = self._population
        return (
            pop is not None
            and (pop.as_of_day, pop.tz) == (clock.as_of_day, self.tz)
            and (stale_ok or pop.basis_day is None)
        )

    def _build_population(self, clock: Clock) -> None:
        """Rank basis for touched runs: every window buyer's spend and last order, one pass."""
        src = self.source
        assert src is not None
        self.population_builds += 1
        cur = self.con.cursor()
        try:
            cur.execute("SET TimeZone = ?", [self.tz])
            cur.execute("CREATE SCHEMA IF NOT EXISTS build")
            cur.execute(f"USE {self.catalog}.build")
            cur.execute(metrics_orders.stage_orders(src, ids=None, clock=clock))
            # No full run for the day: fit the model as it would, for the clv ranks.
            cur.execute(metrics_predictive.STAGE)
            model = metrics_predictive.fit(cur)
            self._score(cur, model, fitted=True)
            cur.execute(f"""
                CREATE OR REPLACE TABLE {self.catalog}.main.population AS
                SELECT w.cid, w.fen_365d, w.last_ago, pred.clv_365d AS clv
                FROM (SELECT cid, sum(fen) AS fen_365d, min(ago) AS last_ago
                      FROM o WHERE ago < 365 GROUP BY cid) AS w
                LEFT JOIN pred ON pred.cid = w.cid""")
            names = cur.execute(
                f"SELECT DISTINCT CAST(name AS VARCHAR) FROM {src.table('profile_attributes')}"
                " WHERE customer_id IS NOT NULL"
            ).fetchall()
            self._population = _Population(
                clock.as_of_day, self.tz, sorted(r[0] for r in names), model
            )
        finally:
            cur.execute(f"USE {self.catalog}.main")
            cur.execute("DROP SCHEMA IF EXISTS build CASCADE")
            cur.close()

    def _profile_names(self, cur: duckdb.DuckDBPyConnection) -> list[str]:
        prefix = "profile."
        cols = [r[0] for r in cur.execute("DESCRIBE metrics").fetchall()]
        return [c[len(prefix) :] for c in cols if c.startswith(prefix)]

    def close(self) -> None:
        """Close DuckDB and remove its spill directory and snapshot."""
        self.con.close()
        shutil.rmtree(self._workdir, ignore_errors=True)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_POP = "cid, fen_365d, last_ago, clv"  # a population row's columns


def _rows(cur: duckdb.DuckDBPyConnection, sql: str) -> dict[int, Row]:
    """Return a population query's rows (cid, fen_365d, last_ago, clv) by customer."""
    return {
        int(cid): (
            None if fen is None else int(fen),
            None if ago is None else int(ago),
            None if clv is None else float(clv),
        )
        for cid, fen, ago, clv in cur.execute(sql).fetchall()
    }


def _usable(st: population.Stored, clock: Clock, tz: str, *, stale_ok: bool) -> bool:
    """Whether stored rows rank as_of's day: theirs, or (`stale_ok`) an earlier one's."""
    if st.serves(clock.as_of_day, tz):
        return True
    return stale_ok and st.tz == tz and st.as_of_day < clock.as_of_day


def compute_metrics(
    db: Database,
    *,
    as_of: datetime,
    tz: str,
    customer_ids: Iterable[int] | None = None,
    limits: EngineLimits = EngineLimits(),
    stale_ok: bool = False,
) -> MetricFrame:
    """Compute the metrics once; the frame owns its engine (close the frame to free both)."""
    engine = MetricsEngine(db, tz=tz, limits=limits)
    try:
        frame = engine.compute(as_of=as_of, customer_ids=customer_ids, stale_ok=stale_ok)
    except BaseException:
        engine.close()
        raise
    frame._owner = engine
    return frame

"""规则试算: how many customers a `when` expression matches now, and a sample; read-only.

The same parser and checker as the config (`bot.rules`), compiled to the same SQL
the re-tier evaluates, over the same metrics engine's frame of every customer. Computing
that frame is a pass over the data (a re-tier's), so a serving process keeps one frame
for `MAX_AGE` and answers every trial from it; the page says when it was computed. The
page never waits for that pass: it is computed in a background thread (one at a time per
process) while the page says so and polls (`trial(wait=False)` gives `pending`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
from sqlalchemy import select

from bot.background_task import BackgroundTask, Cancel
from bot.db import Database
from bot.db.models import Customer
from bot.groups.names import check_group_names, group_names_in, known_names
from bot.rules import RuleError, Scope, compile_condition, names_in, parse_and_check
from bot.rules.explain import format_value
from bot.rules.sql import name_sql, quote_ident
from bot.rules.vocabulary import PROFILE_PREFIX
from bot.tiering.engine import MetricsEngine, compute_metrics
from bot.tiering.frame import TABLE, MetricFrame

log = logging.getLogger(__name__)

MAX_AGE = timedelta(minutes=10)
MAX_CHARS = 2000
SAMPLE = 20


@dataclass(frozen=True)
class SampleRow:
    """One matching customer and the values of the names the expression reads."""

    external_userid: str
    name: str
    values: tuple[str, ...]  # formatted, in `TrialResult.names` order ("缺失" when missing)


@dataclass(frozen=True)
class TrialResult:
    """The expression's matches now, or why it could not be read."""

    text: str
    error: RuleError | None = None
    matched: int = 0
    customers: int = 0  # customers the frame holds
    names: tuple[str, ...] = ()
    sample: tuple[SampleRow, ...] = ()
    as_of: datetime | None = None  # when the frame's metrics were computed
    pending: bool = False  # every customer's metrics are being computed: ask again


class TrialFrames:
    """The frame a process keeps for trials (`Runtime.local`), recomputed after MAX_AGE."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: MetricFrame | None = None
        self._key: tuple[int, str] | None = None
        # The background computation, one at a time (`bot.background_task`).
        self._task: BackgroundTask[tuple[MetricFrame, tuple[int, str]]] = BackgroundTask(
            "rule-trial", dispose=lambda got: got[0].close()
        )
        self.computations = 0  # frames computed (tests count)

    def _fresh(self, db: Database, *, tz: str, now: datetime) -> bool:
        frame = self._frame
        if frame is None or self._key != (id(db), tz):
            return False
        return not (now - frame.as_of > MAX_AGE or frame.as_of > now)

    def _install(self) -> None:
        """Keep the background computation's frame, if one finished (the lock held).

        Raises `duckdb.Error` once when it failed.
        """
        done = self._task.take()
        if done is None:
            return
        if done.error is not None:
            raise duckdb.Error(done.error)
        assert done.result is not None
        self._close()
        self._frame, self._key = done.result

    def ready(self, db: Database, *, tz: str, now: datetime) -> bool:
        """Say whether a frame at most MAX_AGE old is kept; if not, start computing one.

        One computation at a time: a trial while one runs just waits for it. Raises
        `duckdb.Error` once when the last background computation failed.
        """
        with self._lock:
            self._install()
            if self._fresh(db, tz=tz, now=now):
                return True

            def compute(cancel: Cancel) -> tuple[MetricFrame, tuple[int, str]]:
                engine = MetricsEngine(db, tz=tz)
                cancel.on_cancel(engine.con.interrupt)
                try:
                    frame = engine.compute(as_of=now)
                except BaseException:
                    engine.close()
                    raise
                frame._owner = engine  # closed with the frame
                with self._lock:
                    self.computations += 1
                return frame, (id(db), tz)

            self._task.start(compute)
            return False

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background computation, if any; say whether none is running."""
        return self._task.wait(timeout)

    def run(self, db: Database, *, tz: str, now: datetime, query: Any) -> Any:
        """Call `query(frame)` under the lock with a frame at most MAX_AGE old."""
        with self._lock:
            self._install()
            if not self._fresh(db, tz=tz, now=now):
                self._close()
                self._frame = compute_metrics(db, as_of=now, tz=tz)
                self._key = (id(db), tz)
                self.computations += 1
            assert self._frame is not None
            return query(self._frame)

    def _close(self) -> None:
        if self._frame is not None:
            self._frame.close()
        self._frame = None
        self._key = None

    def close(self) -> None:
        """Drop the frame; interrupt a background computation and wait for it (bounded)."""
        self._task.close()
        with self._lock:
            self._close()


def _shown(value: Any) -> str:
    if value is None:
        return "缺失"
    return format_value(float(value) if isinstance(value, Decimal) else value)


def _error(text: str, message: str) -> TrialResult:
    return TrialResult(text, RuleError(message, text=text, start=0, end=len(text)))


def trial(
    text: str,
    *,
    db: Database,
    frames: TrialFrames,
    tz: str,
    now: datetime,
    sample: int = SAMPLE,
    wait: bool = True,
) -> TrialResult:
    """Parse and check `text`, then count and sample the customers it matches now.

    `wait=False` (the page): without a fresh frame, start computing it in the background
    and answer `pending` at once; a syntax error is answered without waiting.
    """
    if not text.strip():
        return _error(text, "请输入条件，例如 spend_365d >= 1000")
    if len(text) > MAX_CHARS:
        return _error(text[:MAX_CHARS], f"条件太长（超过 {MAX_CHARS} 个字符）")
    try:
        # No earlier dimensions: a trial stands alone, as a first dimension's rule does.
        expr = parse_and_check(text, scope=Scope())
        if any(group_names_in(expr)):
            with db.read() as session:
                known = known_names(session=session)
            if known is not None:  # before any group sync every name is unknown: no check
                check_group_names(expr, text=text, known=known)
    except RuleError as exc:
        return TrialResult(text, exc)
    names = tuple(sorted(names_in(expr)))
    condition = compile_condition(expr)

    def query(frame: MetricFrame) -> tuple[int, int, list[tuple[Any, ...]], datetime]:
        columns = set(frame.columns)
        # An attribute nobody has imported is missing for everyone (unknown, not an error).
        absent = [n for n in names if n.startswith(PROFILE_PREFIX) and n not in columns]
        source = TABLE
        if absent:
            extra = ", ".join(f"CAST(NULL AS VARCHAR) AS {quote_ident(n)}" for n in absent)
            source = f"(SELECT *, {extra} FROM {TABLE})"
        total = frame.con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
        found = frame.con.execute(f"SELECT count(*) FROM {source} WHERE {condition}").fetchone()
        picked = ", ".join(["customer_id", *(f"{name_sql(n)} AS {quote_ident(n)}" for n in names)])
        rows = frame.con.execute(
            f"SELECT {picked} FROM {source} WHERE {condition} ORDER BY customer_id LIMIT ?",
            [sample],
        ).fetchall()
        return (int(found[0]) if found else 0, int(total[0]) if total else 0, rows, frame.as_of)

    try:
        if not wait and not frames.ready(db, tz=tz, now=now):
            return TrialResult(text, names=names, pending=True)
        matched, customers, rows, as_of = frames.run(db, tz=tz, now=now, query=query)
    except duckdb.Error as exc:
        return _error(text, f"无法计算这个条件：{type(exc).__name__}")
    ids = [int(r[0]) for r in rows]
    with db.read() as session:
        people = {
            cid: (ext, name)
            for cid, ext, name in session.execute(
                select(Customer.id, Customer.external_userid, Customer.name).where(
                    Customer.id.in_(ids)
                )
            )
        }
    picked_rows = tuple(
        SampleRow(
            *people.get(int(r[0]), (str(r[0]), "")),
            tuple(_shown(v) for v in r[1:]),
        )
        for r in rows
    )
    return TrialResult(text, None, matched, customers, names, picked_rows, as_of)

"""The metrics engine never lets its own SQLite library touch the bot's live database file."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import text

from bot import leases
from bot.db import Database
from bot.tiering.engine import MetricsEngine
from bot.tiering.source import ALIAS
from tests.tier_metrics_factory import AS_OF, customer, local, order


def _attached(engine: MetricsEngine) -> Path:
    row = engine.con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = ?", [ALIAS]
    ).fetchone()
    assert row is not None
    return Path(row[0]).resolve()


def test_metrics_on_a_live_sqlite_file_leave_it_intact(
    tmp_path: Path, sqlite_template: Path
) -> None:
    target = tmp_path / "live.db"
    target.write_bytes(sqlite_template.read_bytes())
    db = Database(f"sqlite:///{target}")
    try:
        with db.write() as s:
            for i in range(50):
                order(s, customer(s, f"wm_{i}"), 100 + i, local(3))
        stop = threading.Event()

        def beat() -> None:  # a heartbeat writing while metrics are computed, as in `serve`
            n = 0
            while not stop.is_set():
                with db.write() as s:
                    leases.try_acquire(f"beat{n % 7}", "me", 30, session=s)
                n += 1
                stop.wait(0.005)  # let the test's own writes take their turn

        beater = threading.Thread(target=beat)
        beater.start()
        engine = MetricsEngine(db, tz="Asia/Shanghai")
        try:
            for round_ in range(3):  # the bot keeps writing between and after runs
                with engine.compute(as_of=AS_OF) as frame:
                    assert frame.count() == 50 + round_
                    # The scanner's own SQLite library never opens the live file, only a copy.
                    assert _attached(engine) != target.resolve()
                # A touched run reads a copy of its customers' rows: not the live file either.
                with engine.compute(as_of=AS_OF, customer_ids=[1, 2, 3]) as frame:
                    assert frame.count() == 3
                    assert _attached(engine) != target.resolve()
                with db.write() as s:
                    leases.try_acquire(f"l{round_}", "me", 30, session=s)
                    leases.release(f"l{round_}", "me", session=s)
                    customer(s, f"wm_more_{round_}")
        finally:
            engine.close()
            stop.set()
            beater.join()
        with db.read() as s:
            assert s.execute(text("PRAGMA integrity_check")).scalar_one() == "ok"
        assert not list(tmp_path.glob("source-*"))  # no snapshot left beside the database
    finally:
        db.dispose()

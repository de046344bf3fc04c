"""SQLite's disk full during an import and a re-tier: one clear line, nothing half-written.

The database lives on a small tmpfs filled up with a filler file, so SQLite meets a real
SQLITE_FULL ("database or disk is full") as on a full disk; the commands run as an operator
types them. Needs the right to mount a tmpfs (root in CI); skipped with the reason otherwise.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from bot.db import Database
from bot.db.migrate import upgrade_to_head
from bot.db.models import Order, TierAssignment
from tests.support.outreach_data import customers, orders
from tests.support.processes import run_tagbot
from tests.support.tiers import default_tiers_config

pytestmark = pytest.mark.slow  # real `tagbot` processes

DISK_BYTES = 12 * 1024 * 1024
LEFT_BYTES = 48 * 1024  # what the filler leaves free: less than either command needs


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 12 MB tmpfs mounted under tmp_path, unmounted after the test."""
    where = tmp_path / "disk"
    where.mkdir()
    if not shutil.which("mount"):
        pytest.skip("no mount command")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path) -> Path:
    """Fill the disk up to LEFT_BYTES free; return the filler, to delete to make room."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with filler.open("wb") as f:
        f.truncate(0)
        block = b"\0" * (1024 * 1024)
        left = free - LEFT_BYTES
        while left > 0:
            f.write(block[: min(len(block), left)])
            left -= len(block)
    assert shutil.disk_usage(disk).free <= LEFT_BYTES + 8192
    return filler


def _count(db_url: str, what: object) -> int:
    db = Database(db_url)
    try:
        with db.read() as s:
            return int(s.scalar(select(func.count()).select_from(what)) or 0)  # type: ignore[arg-type]
    finally:
        db.dispose()


def _intact(db_url: str) -> None:
    db = Database(db_url)
    try:
        with db.engine.connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    finally:
        db.dispose()


def _one_clear_line(stderr: str) -> None:
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot use the database: database or disk is full")
    assert "磁盘已满" in last
    assert "free space" in last


def _seeded(disk: Path, tmp_path: Path) -> tuple[str, Path]:
    url = f"sqlite:///{disk / 'tagbot.db'}"
    db = Database(url)
    upgrade_to_head(db.engine)
    ids = customers(db, 400)
    paid = datetime.now(UTC) - timedelta(days=20)
    orders(db, [(c, 100.0 + i % 7 * 900, paid, "paid") for i, c in enumerate(ids)])
    db.dispose()
    return url, default_tiers_config(tmp_path, url)


def test_a_retier_on_a_full_disk_says_so_and_records_no_tier(
    small_disk: Path, tmp_path: Path
) -> None:
    url, config = _seeded(small_disk, tmp_path)
    filler = _fill(small_disk)

    done = run_tagbot("--config", str(config), "retier", cwd=tmp_path)

    assert done.returncode == 1
    _one_clear_line(done.stderr)
    assert _count(url, TierAssignment) == 0
    _intact(url)
    # Room made: the same command records every tier (WeCom is unreachable here: recorded only).
    filler.unlink()
    again = run_tagbot("--config", str(config), "retier", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert _count(url, TierAssignment) > 0


def test_an_import_on_a_full_disk_says_so_and_a_second_run_completes_it(
    small_disk: Path, tmp_path: Path
) -> None:
    url, config = _seeded(small_disk, tmp_path)
    before = _count(url, Order)
    rows = 30_000
    path = tmp_path / "orders.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["order_id", "external_userid", "amount", "paid_at", "status"])
        for i in range(rows):
            out.writerow(
                [f"df{i:07d}", f"wm_syn_{i % 400:06d}", "88.00", "2026-11-01 10:00:00", "paid"]
            )
    filler = _fill(small_disk)

    done = run_tagbot("--config", str(config), "import", "orders", str(path), cwd=tmp_path)

    assert done.returncode == 1
    _one_clear_line(done.stderr)
    _intact(url)
    stored = _count(url, Order) - before
    assert 0 <= stored < rows  # the batches committed before the disk filled, each whole
    filler.unlink()
    again = run_tagbot("--config", str(config), "import", "orders", str(path), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert _count(url, Order) - before == rows

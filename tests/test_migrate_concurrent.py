"""Several processes starting together on a fresh PostgreSQL schema all migrate it, once.

`serve`, `worker` and `scheduler` each run the migrations at start; docker-compose and
systemd start them together. Without a lock the second process's CREATE TABLE fails on the
first's ("already exists") and that process exits.
"""

from __future__ import annotations

import multiprocessing as mp
import uuid
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier

import pytest
from sqlalchemy import text

from bot.db import Database
from bot.db.migrate import current_revision, upgrade_to_head
from tests.support.corp import PG_URL

PROCESSES = 3


def _migrate(url: str, barrier: Barrier, results: mp.Queue[str]) -> None:
    db = Database(url)
    barrier.wait(timeout=60)  # every process starts its upgrade at the same moment
    try:
        upgrade_to_head(db.engine)
        results.put("ok")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}".splitlines()[0])
    finally:
        db.dispose()


@pytest.fixture
def fresh_schema_url() -> Iterator[str]:
    try:
        admin = Database(PG_URL)
        with admin.engine.begin() as conn:
            schema = f"tagbot_migrate_{uuid.uuid4().hex[:10]}"
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with admin.engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def test_processes_starting_together_all_migrate_a_fresh_schema(fresh_schema_url: str) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results: mp.Queue[str] = ctx.Queue()
    procs = [
        ctx.Process(target=_migrate, args=(fresh_schema_url, barrier, results))
        for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    outcomes = sorted(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    assert outcomes == ["ok"] * PROCESSES
    db = Database(fresh_schema_url)
    try:
        with db.engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        assert len(versions) == 1
        assert versions[0][0] == current_revision(db.engine)
    finally:
        db.dispose()

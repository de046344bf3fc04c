"""`[database] analytics_url`: the nightly (full) re-tier reads a replica, and writes `url`.

A second PostgreSQL schema stands in for the replica: the same rows, plus one order only
it holds, so which database a run read shows in its tiers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from bot.config import settings_from_mapping
from bot.db import Database
from bot.db.migrate import upgrade_to_head
from bot.db.models import Base, Customer, RetierRun, TierAssignment
from bot.db.replica import caught_up
from bot.errors import ConfigError
from bot.tiering.defaults import default_tiers_text
from tagbot.cli import main
from tests.support.configs import toml_text
from tests.support.corp import PG_URL, base_config
from tests.tier_metrics_factory import AS_OF, customer, local, order


@pytest.fixture
def primary(pg_schema_url: str) -> Iterator[Database]:
    db = Database(pg_schema_url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield db
    db.dispose()


@pytest.fixture
def replica(primary: Database) -> Iterator[Database]:
    """A schema migrated alike and holding a copy of every row of `primary`."""
    schema = f"tagbot_analytics_{uuid.uuid4().hex[:10]}"
    admin = Database(PG_URL)
    with admin.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    db = Database(f"{PG_URL}?options=-csearch_path%3D{schema}")
    upgrade_to_head(db.engine)
    yield db
    db.dispose()
    with admin.engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _copy(primary: Database, replica: Database) -> None:
    with primary.engine.connect() as conn:
        source = conn.execute(text("SELECT current_schema()")).scalar_one()
    with replica.engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            conn.execute(
                text(f'INSERT INTO "{table.name}" SELECT * FROM "{source}"."{table.name}"')
            )
            if "id" not in table.c:
                continue
            seq = conn.execute(
                text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table.name}
            ).scalar()
            if seq is not None:  # new rows continue after the copied ids
                conn.execute(
                    text(f"SELECT setval(:s, coalesce(max(id), 0) + 1, false) FROM {table.name}"),
                    {"s": seq},
                )


def _config(tmp_path: Path, url: str, analytics_url: str = "") -> Path:
    data = base_config(url)
    if analytics_url:
        data["database"]["analytics_url"] = analytics_url
    data["app"] = {"log_level": "WARNING"}
    path = tmp_path / f"config-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(toml_text(data) + "[tiering]\n" + default_tiers_text(), encoding="utf-8")
    return path


def _dry_run(config: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    argv = ["--config", str(config), "retier", "--dry-run", "--as-of", AS_OF.isoformat()]
    assert main(argv) == 0
    return [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]


def test_the_full_retier_reads_the_analytics_database_and_writes_the_main_one(
    tmp_path: Path,
    primary: Database,
    replica: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with primary.write() as s:
        order(s, customer(s, "wm_vip"), 6000, local(3))
        order(s, customer(s, "wm_small"), 300, local(3))
    _copy(primary, replica)
    with replica.write() as s:  # what only the "replica" holds: wm_small's big order
        small = s.scalars(select(Customer).where(Customer.external_userid == "wm_small")).one()
        order(s, small, 6000, local(2))

    # without analytics_url: the main database's data
    plain = _dry_run(_config(tmp_path, primary.url), capsys)
    assert "（无） → 高价值 1" in plain
    assert "（无） → 低价值 1" in plain
    # with it: the replica's (both customers spent 5000 or more)
    both = _config(tmp_path, primary.url, analytics_url=replica.url)
    assert "（无） → 高价值 2" in _dry_run(both, capsys)

    assert main(["--config", str(both), "retier", "--as-of", AS_OF.isoformat()]) == 0
    capsys.readouterr()
    with primary.read() as s:
        tiers = dict(
            s.execute(
                select(Customer.external_userid, TierAssignment.tier)
                .join(TierAssignment, TierAssignment.customer_id == Customer.id)
                .where(TierAssignment.dimension == "value")
            ).all()
        )
        assert s.scalar(select(func.count()).select_from(RetierRun)) == 1
    assert tiers == {"wm_vip": "高价值", "wm_small": "高价值"}
    with replica.read() as s:  # read only: the run wrote nothing there
        assert s.scalar(select(func.count()).select_from(RetierRun)) == 0
        assert s.scalar(select(func.count()).select_from(TierAssignment)) == 0


def test_a_server_not_in_recovery_counts_as_caught_up(primary: Database, replica: Database) -> None:
    # A standby is waited for until it replays the primary's WAL position; a copy that is
    # no standby has nothing to replay (this server is a primary: both are).
    with replica.engine.connect() as conn:
        assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is False
    assert caught_up(primary, replica, timeout=0)


def test_analytics_url_is_checked_at_start() -> None:
    sqlite = base_config("sqlite:///tagbot.db")
    sqlite["database"]["analytics_url"] = "postgresql+psycopg://replica/tagbot"
    with pytest.raises(ConfigError, match="analytics_url"):
        settings_from_mapping(sqlite, environ={})
    pg = base_config("postgresql+psycopg://primary/tagbot")
    pg["database"]["analytics_url"] = "sqlite:///copy.db"
    with pytest.raises(ConfigError, match="analytics_url"):
        settings_from_mapping(pg, environ={})
    pg["database"]["analytics_url"] = "postgresql+psycopg://replica/tagbot"
    assert settings_from_mapping(pg, environ={}).database.analytics_url.endswith("/tagbot")

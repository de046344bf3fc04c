"""Shared fixtures: a real database on SQLite and PostgreSQL, settings, the WeCom simulator.

Fixtures only: what tests import (constants, configs, LiveServer) is in tests/support/.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from bot.config import Settings, settings_from_mapping
from bot.db import Database
from bot.db.migrate import upgrade_to_head
from bot.db.models import Base
from handlers.app import create_app
from tests.support.console_browser import browser, served, tab  # noqa: F401  (fixtures)
from tests.support.corp import AES_KEY, AGENT_ID, CORP_ID, PG_URL, SECRET, TOKEN, base_config


def _pg_reason() -> str | None:
    """Return why PostgreSQL can't be used, or None when it answers."""
    dsn = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return f"no PostgreSQL server answers at {PG_URL}: {str(exc).strip()[:200]}"


_PG_UNAVAILABLE = _pg_reason()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is much faster)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite:///{path}")
    upgrade_to_head(db.engine)
    db.dispose()  # closing the last connection checkpoints the WAL into the file
    return path


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL schema for this test session, migrated once and dropped at the end."""
    if _PG_UNAVAILABLE:
        pytest.skip(_PG_UNAVAILABLE)
    schema = f"tagbot_test_{uuid.uuid4().hex[:10]}"
    admin = Database(PG_URL)
    with admin.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    db = Database(url)
    upgrade_to_head(db.engine)
    db.dispose()
    yield url
    with admin.engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database; every test using it runs on both backends."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "tagbot.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("pg_schema_url")
    db = Database(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    db.dispose()
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A Database on the migrated test database."""
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def settings(db_url: str) -> Settings:
    """Settings on the test database, with no reachable WeCom."""
    return settings_from_mapping(base_config(db_url), environ={})


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    """The Flask app on the test database (no background jobs)."""
    application = create_app(settings)
    yield application
    application.extensions["tagbot"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A Flask test client for the app."""
    return app.test_client()


@pytest.fixture
def simulator() -> Iterator[Any]:
    """The WeCom simulator over real HTTP on a free port, with the test corp's credentials."""
    from wecom_sim import Simulator

    sim = Simulator(
        corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID, token=TOKEN, encoding_aes_key=AES_KEY
    ).start()
    yield sim
    sim.stop()

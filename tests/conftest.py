"""Shared fixtures: a real database on SQLite and PostgreSQL, settings, the WeCom simulator."""

from __future__ import annotations

import json
import os
import shutil
import threading
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from werkzeug.serving import make_server

from bot.config import Settings, settings_from_mapping
from bot.db import Database
from bot.db.migrate import upgrade_to_head
from bot.db.models import Base
from bot.runtime import Runtime
from handlers.app import create_app
from jobs.background import Background

# The worked example of the official encryption page (doc 91144), copied from
# ../shared/vectors so the suite runs from a lone clone.
VECTORS = Path(__file__).parent / "vectors" / "wecom-doc-91144.json"

PG_URL = os.environ.get("TAGBOT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

CORP_ID = "wwtestcorp000001"
SECRET = "test-secret-of-the-self-built-app"
AGENT_ID = 1000002
TOKEN = "tagbotTestToken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
ADMIN_TOKEN = "test-admin-token-0123456789"


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


def base_config(db_url: str, api_base: str = "http://127.0.0.1:9/cgi-bin/") -> dict[str, Any]:
    """The smallest valid config, as a TOML-shaped dict tests can extend."""
    return {
        "wecom": {
            "corp_id": CORP_ID,
            "secret": SECRET,
            "agent_id": AGENT_ID,
            "token": TOKEN,
            "encoding_aes_key": AES_KEY,
            "api_base": api_base,
            "timeout_seconds": 2.0,
        },
        "database": {"url": db_url},
        "server": {"host": "127.0.0.1", "port": 0, "admin_token": ADMIN_TOKEN},
    }


def to_toml(data: dict[str, dict[str, Any]]) -> str:
    """Write a config dict of flat sections as TOML text (JSON strings are TOML strings)."""
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines += [f"{json.dumps(key)} = {json.dumps(value)}" for key, value in values.items()]
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # fail here, not in the CLI, if the helper is wrong
    return text


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


class LiveServer:
    """The bot served over real HTTP on a free port, optionally with its background jobs."""

    def __init__(self, settings: Settings, *, jobs: bool = True) -> None:
        self.app = create_app(settings)
        self.runtime: Runtime = self.app.extensions["tagbot"]
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.background: Background | None = None
        self.jobs = jobs

    def start(self) -> LiveServer:
        self.thread.start()
        if self.jobs:
            self.background = Background(self.runtime)
            self.background.start_workers()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        if self.background is not None:
            self.background.stop()
        self.runtime.close()


@pytest.fixture
def simulator() -> Iterator[Any]:
    """The WeCom simulator over real HTTP on a free port, with the test corp's credentials."""
    from wecom_sim import Simulator

    sim = Simulator(
        corp_id=CORP_ID, secret=SECRET, agent_id=AGENT_ID, token=TOKEN, encoding_aes_key=AES_KEY
    ).start()
    yield sim
    sim.stop()

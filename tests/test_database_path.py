"""A relative SQLite path is read from the config file's folder; a missing database is one line.

Run from the outside, as an operator types it: `cd sub && tagbot --config ../config.toml ...`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.db import Database
from tests.support.configs import toml_text as to_toml
from tests.support.corp import PG_URL, base_config
from tests.support.processes import run_tagbot

pytestmark = pytest.mark.slow  # real `tagbot` processes, run in a subfolder


def _deployment(tmp_path: Path, url: str = "sqlite:///tagbot.db") -> tuple[Path, Path]:
    """Write deploy/config.toml on `url` with WARNING logs; return it and deploy/sub."""
    deploy = tmp_path / "deploy"
    sub = deploy / "sub"
    sub.mkdir(parents=True)
    data = base_config(url)
    data["app"] = {"log_level": "WARNING"}
    config = deploy / "config.toml"
    config.write_text(to_toml(data), encoding="utf-8")
    return config, sub


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def test_a_relative_sqlite_path_follows_the_config_file_not_the_working_directory(
    tmp_path: Path,
) -> None:
    config, sub = _deployment(tmp_path)
    made = run_tagbot("--config", "../config.toml", "init-db", cwd=sub)
    assert made.returncode == 0, made.stderr
    assert "tagbot.db" in _files(config.parent)
    listed = run_tagbot("--config", "../config.toml", "channel", "list", cwd=sub)
    assert (listed.returncode, listed.stderr) == (0, "")
    assert "no channels yet" in listed.stdout
    assert _files(sub) == []  # no stray empty sub/tagbot.db
    checked = run_tagbot("--config", "deploy/config.toml", "check-config", cwd=tmp_path)
    assert f"database=sqlite:///{config.parent / 'tagbot.db'}" in checked.stdout


def test_a_missing_sqlite_file_is_one_line_naming_it_and_is_not_created(tmp_path: Path) -> None:
    config, sub = _deployment(tmp_path)
    listed = run_tagbot("--config", "../config.toml", "channel", "list", cwd=sub)
    assert listed.returncode == 1
    assert listed.stderr.splitlines() == [
        "error: 数据库文件不存在，请先运行 `tagbot init-db` / database file not found:"
        f" {config.parent / 'tagbot.db'} (run `tagbot init-db` first)"
    ]
    assert _files(sub) == []
    assert _files(config.parent) == ["config.toml"]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A database with no tagbot schema: its URL, and how errors name it."""
    if request.param == "sqlite":
        (tmp_path / "empty.db").touch()
        yield f"sqlite:///{tmp_path / 'empty.db'}", str(tmp_path / "empty.db")
        return
    request.getfixturevalue("pg_schema_url")  # skips when no PostgreSQL answers
    schema = f"tagbot_empty_{uuid.uuid4().hex[:10]}"
    admin = Database(PG_URL)
    with admin.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    yield url, make_url(url).render_as_string(hide_password=True)
    with admin.engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def test_a_database_without_schema_is_one_line_with_the_init_db_hint(
    tmp_path: Path, empty_database: tuple[str, str]
) -> None:
    url, label = empty_database
    _, sub = _deployment(tmp_path, url)
    listed = run_tagbot("--config", "../config.toml", "channel", "list", cwd=sub)
    assert listed.returncode == 1
    assert listed.stderr.splitlines() == [
        "error: 数据库尚未初始化，请先运行 `tagbot init-db` / database has no tagbot schema:"
        f" {label} (run `tagbot init-db` first)"
    ]


def test_a_missing_table_names_the_database_and_init_db(
    tmp_path: Path, empty_database: tuple[str, str]
) -> None:
    url, label = empty_database
    db = Database(url)
    with db.engine.begin() as conn:  # looks set up, yet has no tables: a half-done init
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
    db.dispose()
    _, sub = _deployment(tmp_path, url)
    listed = run_tagbot("--config", "../config.toml", "channel", "list", cwd=sub)
    assert listed.returncode == 1
    [line] = listed.stderr.splitlines()
    assert line.startswith("error: cannot use the database: ")
    assert "channels" in line  # no such table: channels / relation "channels" does not exist
    assert line.endswith(f" ({label}) — 请运行 / run `tagbot init-db`")

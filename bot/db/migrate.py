"""Run Alembic migrations programmatically (`tagbot init-db`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect, text

from bot.db.session import Database, database_label, sqlite_file
from bot.errors import TagbotError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """Build an Alembic config pointing at our migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# Taken for the migration's transaction on PostgreSQL, one lock per schema: `serve`,
# `worker` and `scheduler` each upgrade at start, and containers or units started together
# would otherwise race to create the same tables (the loser failing with "already exists").
# The second waits, then finds the schema at head and does nothing.
_MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(hashtext('tagbot-migrate:' || current_schema()))"


def upgrade_to_head(engine: Engine) -> None:
    """Upgrade the schema to the newest revision; a no-op when already there.

    Safe to run from several processes at once: on PostgreSQL they take turns.
    """
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(_MIGRATION_LOCK))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def current_revision(engine: Engine) -> str | None:
    """Return the revision the database is at, or None before init-db."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


class DatabaseNotReadyError(TagbotError):
    """The database file or its schema does not exist yet: `tagbot init-db` creates them."""


def require_file(url: str) -> None:
    """Refuse a SQLite file that does not exist (connecting would create an empty one)."""
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise DatabaseNotReadyError(
            f"数据库文件不存在，请先运行 `tagbot init-db` / database file not found: {path}"
            " (run `tagbot init-db` first)"
        )


def require_schema(db: Database) -> None:
    """Refuse a database that `tagbot init-db` has not set up (no schema revision)."""
    # Not current_revision(): Alembic's context logs two INFO lines on every command.
    with db.engine.connect() as conn:
        migrated = inspect(conn).has_table("alembic_version")
    if not migrated:
        raise DatabaseNotReadyError(
            "数据库尚未初始化，请先运行 `tagbot init-db` / database has no tagbot schema:"
            f" {database_label(db.url)} (run `tagbot init-db` first)"
        )

"""The Alembic migrations produce exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from bot.db import Database
from bot.db.models import Base
from bot.db.search_index import TRIGRAM_INDEXES, include_object


def test_models_and_migrations_agree(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"include_object": include_object}), Base.metadata
        )
    assert diff == [], f"models changed without a migration (make migration): {diff}"


def test_postgresql_gets_the_search_trigram_indexes_where_pg_trgm_is_available(
    db: Database,
) -> None:
    if db.is_sqlite:
        assert not _indexes_named(db, TRIGRAM_INDEXES)  # the search scans on SQLite
        return
    with db.engine.connect() as conn:
        available = conn.execute(
            text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
        ).scalar()
    assert _indexes_named(db, TRIGRAM_INDEXES) == (set(TRIGRAM_INDEXES) if available else set())


def _indexes_named(db: Database, names: frozenset[str]) -> set[str]:
    found = set()
    for table in ("customers", "follow_relations"):
        found |= {str(i["name"]) for i in inspect(db.engine).get_indexes(table)}
    return found & names

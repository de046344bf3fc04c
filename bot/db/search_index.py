"""Indexes a migration creates only where the database can have them (not in the models).

The 客户 search matches substrings of names and remarks. PostgreSQL serves that from
trigram GIN indexes when the pg_trgm extension is installed or may be created (migration
603a8c5bd0e4); without it, and on SQLite, the search reads customers newest first.
"""

from __future__ import annotations

from typing import Any

TRIGRAM_INDEXES = frozenset({"ix_customers_name_trgm", "ix_follow_relations_remark_trgm"})


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's filter: leave the optional indexes out of autogenerate's comparison."""
    return not (type_ == "index" and reflected and name in TRIGRAM_INDEXES)

"""Database access: engine and sessions (session.py), models (models.py), migrations."""

from bot.db.session import Database

__all__ = ["Database"]

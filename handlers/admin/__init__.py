"""The operator console (运营后台) under /admin/: sign-in, roles, audit and its pages."""

from __future__ import annotations

from handlers.admin import guard, login, pages, system
from handlers.admin.blueprint import bp

__all__ = ["bp", "guard", "login", "pages", "system"]

"""The operator console (运营后台) under /admin/: sign-in, roles, audit and its pages."""

from __future__ import annotations

from handlers.admin import customers, guard, login, pages
from handlers.admin.blueprint import bp

__all__ = ["bp", "customers", "guard", "login", "pages"]

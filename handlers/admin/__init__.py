"""The operator console (运营后台) under /admin/: sign-in, roles, audit and its pages."""

from __future__ import annotations

from handlers.admin import campaigns, channels, customers, guard, login, loss, pages, system, tiers
from handlers.admin.blueprint import bp

__all__ = [
    "bp",
    "campaigns",
    "channels",
    "customers",
    "guard",
    "login",
    "loss",
    "pages",
    "system",
    "tiers",
]

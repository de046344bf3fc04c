"""The staff sidebar under /sidebar/: a page of the self-built app in the WeCom chat toolbar."""

from __future__ import annotations

from handlers.sidebar import errors, pages, signin
from handlers.sidebar.blueprint import bp

__all__ = ["bp", "errors", "pages", "signin"]

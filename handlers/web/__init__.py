"""The web foundation the operator console (and later the staff sidebar) is built on.

Server-rendered Jinja2 pages (templates in handlers/templates/, autoescaped), static files
in handlers/static/ with the vendored front-end libraries, signed cookies carrying only a
server-side session id, CSRF tokens, and the security headers every page gets.
"""

from __future__ import annotations

from flask import Flask

from handlers.web import filters, security


def init_app(app: Flask) -> None:
    """Bind the web foundation to the app: template filters and security headers."""
    filters.init_app(app)
    security.init_app(app)

"""Access to the process runtime from inside a request."""

from __future__ import annotations

from flask import current_app

from bot.runtime import Runtime


def runtime() -> Runtime:
    """Return the Runtime bound to the current app."""
    rt: Runtime = current_app.extensions["tagbot"]
    return rt

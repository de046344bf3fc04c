"""Jinja filters for the pages: local times and grouped numbers."""

from __future__ import annotations

from datetime import datetime

from flask import Flask

from handlers.context import runtime


def localtime(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Show an aware time in the configured time zone ("—" for none)."""
    if value is None:
        return "—"
    return value.astimezone(runtime().settings.tz).strftime(fmt)


def number(value: int | float) -> str:
    """Group thousands: 1,234,567."""
    return f"{value:,}"


def signed(value: int) -> str:
    """Show a change with its sign: +3, -2, 0."""
    return f"{value:+,}" if value else "0"


def init_app(app: Flask) -> None:
    """Register the filters."""
    app.add_template_filter(localtime, "localtime")
    app.add_template_filter(number, "number")
    app.add_template_filter(signed, "signed")

"""The Flask app factory: the table of contents of the web process."""

from __future__ import annotations

from flask import Flask

from bot.config import Settings
from bot.runtime import Runtime
from handlers.jsonsafe import SafeJSONProvider

EXTENSION_KEY = "tagbot"


def create_app(settings: Settings, *, runtime: Runtime | None = None) -> Flask:
    """Build the web app on the given settings (and an existing runtime, when shared)."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 32 * 1024 * 1024  # bulk /api uploads; callbacks check less
    app.json = SafeJSONProvider(app)  # Chinese stays readable; lone surrogates escaped
    app.extensions[EXTENSION_KEY] = runtime or Runtime(settings)
    register_blueprints(app)
    register_errorhandlers(app)
    return app


def register_blueprints(app: Flask) -> None:
    from handlers import health

    app.register_blueprint(health.bp)
    for name in ("callback", "api", "admin", "channels_api"):
        _register_optional(app, name)


def _register_optional(app: Flask, name: str) -> None:
    # Feature blueprints land module by module; each exposes `bp`.
    import importlib

    try:
        module = importlib.import_module(f"handlers.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"handlers.{name}":
            raise
        return
    app.register_blueprint(module.bp)


def register_errorhandlers(app: Flask) -> None:
    from handlers import errors

    errors.init_app(app)

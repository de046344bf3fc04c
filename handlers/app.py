"""The Flask app factory: the table of contents of the web process."""

from __future__ import annotations

from flask import Flask

from bot import metrics, staff_alerts
from bot.callbacks import inbox
from bot.channels import welcome
from bot.config import Settings
from bot.outreach import claims as outreach_claims
from bot.outreach import webhook as outreach_webhook
from bot.runtime import Runtime
from bot.tags import outbox
from bot.wecom import metrics as wecom_metrics
from handlers import (
    admin,
    api,
    callback,
    callback_wsgi,
    channels_api,
    errors,
    health,
    outreach_api,
    outreach_results_api,
    sidebar,
    web,
)
from handlers.jsonsafe import SafeJSONProvider

EXTENSION_KEY = "tagbot"


def create_app(settings: Settings, *, runtime: Runtime | None = None) -> Flask:
    """Build the web app on the given settings (and an existing runtime, when shared)."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 32 * 1024 * 1024  # bulk /api uploads; callbacks check less
    app.json = SafeJSONProvider(app)  # Chinese stays readable; lone surrogates escaped
    rt = app.extensions[EXTENSION_KEY] = runtime or Runtime(settings)
    register_blueprints(app)
    register_errorhandlers(app)
    web.init_app(app)  # the console's and sidebar's template filters and security headers
    register_metrics(rt)
    callback_wsgi.install(app, rt)  # the ack on every scan, before Flask's request handling
    return app


def register_blueprints(app: Flask) -> None:
    for module in (
        health,
        callback,
        api,
        channels_api,
        outreach_api,
        outreach_results_api,
        admin,
        sidebar,
    ):
        app.register_blueprint(module.bp)


def register_errorhandlers(app: Flask) -> None:
    errors.init_app(app)


def register_metrics(rt: Runtime) -> None:
    """Expose the process's metrics and the queue depths, with or without background jobs."""
    metrics.register(
        (
            *metrics.METRICS,
            *wecom_metrics.METRICS,
            *inbox.METRICS,
            *welcome.METRICS,
            *outbox.METRICS,
            *staff_alerts.METRICS,
            *outreach_claims.METRICS,
            *outreach_webhook.METRICS,
        )
    )
    metrics.UP.set(1)
    rt.refreshers.add((inbox.refresh_depth, outbox.refresh_depth, staff_alerts.refresh_depth))

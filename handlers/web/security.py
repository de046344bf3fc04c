"""Security headers for the server-rendered pages and their static files."""

from __future__ import annotations

from flask import Flask, Response, request

WEB_PREFIXES = ("/admin", "/sidebar", "/static/")
VENDOR_PREFIX = "/static/vendor/"  # versioned folders: a file there never changes
YEAR = 365 * 24 * 3600

# No inline script anywhere: every script is a file under /static/. Style attributes are
# allowed (ECharts writes its tooltip as HTML with style attributes), <style> elements not.
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


def init_app(app: Flask) -> None:
    """Add the headers to every response under the web prefixes."""

    @app.after_request
    def _headers(response: Response) -> Response:
        if not request.path.startswith(WEB_PREFIXES):
            return response
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        if response.mimetype == "text/html":
            response.headers["Cache-Control"] = "no-store"  # pages hold customer data
        elif request.path.startswith(VENDOR_PREFIX) and response.status_code in (200, 304):
            response.headers["Cache-Control"] = f"public, max-age={YEAR}, immutable"
        return response

"""Signed cookies: only random ids and nonces travel, signed with a key from the admin token.

Changing `[server] admin_token` therefore signs every browser out, as it should.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from flask import request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response

from handlers.context import runtime


def _key() -> bytes:
    token = runtime().settings.server.admin_token.get_secret_value().encode()
    return hmac.new(token, b"tagbot web cookies v1", hashlib.sha256).digest()


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_key(), salt=salt)


def secure() -> bool:
    """Tell whether cookies must be Secure: the request came over HTTPS, or public_url is https."""
    public_url = runtime().settings.server.public_url
    return request.is_secure or public_url.startswith("https://")


def read(name: str, *, max_age: int) -> Any:
    """Return the signed value of a request cookie, or None when absent, forged or too old."""
    raw = request.cookies.get(name)
    if not raw:
        return None
    try:
        return _serializer(name).loads(raw, max_age=max_age)
    except BadSignature:  # includes SignatureExpired
        return None


def write(response: Response, name: str, value: Any, *, path: str, max_age: int) -> None:
    """Set a signed, HttpOnly, SameSite=Lax cookie (Secure behind HTTPS)."""
    response.set_cookie(
        name,
        _serializer(name).dumps(value),
        max_age=max_age,
        path=path,
        secure=secure(),
        httponly=True,
        samesite="Lax",
    )


def clear(response: Response, name: str, *, path: str) -> None:
    """Remove a cookie from the browser."""
    response.delete_cookie(name, path=path, secure=secure(), httponly=True, samesite="Lax")

"""The sidebar's blueprint, shared by its view modules."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("sidebar", __name__, url_prefix="/sidebar")

"""The fake WeCom server API under /cgi-bin/; importing it registers every route."""

from __future__ import annotations

from wecom_sim.api import (
    auth,
    contact_ways,
    customers,
    group_chats,
    messages,
    tags,
    tickets,
    token,
)
from wecom_sim.api.registry import ROUTES, dispatch, normalise

__all__ = [
    "ROUTES",
    "auth",
    "contact_ways",
    "customers",
    "dispatch",
    "group_chats",
    "messages",
    "normalise",
    "tags",
    "tickets",
    "token",
]

"""JS-SDK signatures for the sidebar page: corp and app identity, from shared cached tickets.

Interface agreed between the sidebar page (handlers/sidebar) and the ticket store; the
implementation lands with the ticket store (issue 19).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.db import Database
from bot.wecom.client import WeComClient


@dataclass(frozen=True)
class JsSignature:
    """What `ww.register`'s getConfigSignature / getAgentConfigSignature return."""

    timestamp: int
    nonce_str: str
    signature: str


@dataclass(frozen=True)
class PageSignatures:
    """Both identities' signatures for one page URL (the URL without its fragment)."""

    corp_id: str
    agent_id: int
    corp: JsSignature  # over the corp jsapi_ticket
    agent: JsSignature  # over the app's agent_config ticket


def sign_page(
    url: str, *, db: Database, wecom: WeComClient, now: datetime | None = None
) -> PageSignatures:
    """Sign `url` with both tickets, fetching a ticket only when the shared store has none fresh."""
    raise NotImplementedError("lands with the ticket store")

"""JS-SDK signatures for the sidebar page: corp and app identity, from shared cached tickets.

Interface agreed between the sidebar page (handlers/sidebar) and the ticket store
(bot.sidebar.tickets). The signature is WeCom's (doc 90506, wecom-api.md section 7.6):
sha1 of `jsapi_ticket=T&noncestr=N&timestamp=TS&url=URL`, exactly in that order, with
no URL encoding and the URL without its fragment.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from bot.db import Database
from bot.db.types import utcnow
from bot.errors import ValidationError
from bot.sidebar.tickets import TicketKind, current
from bot.wecom.client import WeComClient

URL_MAX = 2048
_NONCE_CHARS = string.ascii_letters + string.digits
NONCE_LENGTH = 16


def js_signature(ticket: str, nonce_str: str, timestamp: int, url: str) -> str:
    """Return WeCom's JS-SDK signature of `url` over `ticket` (lower-case hex sha1)."""
    plain = f"jsapi_ticket={ticket}&noncestr={nonce_str}&timestamp={timestamp}&url={url}"
    return hashlib.sha1(plain.encode()).hexdigest()  # noqa: S324  (WeCom's protocol is sha1)


def page_url(url: str) -> str:
    """Return the URL WeCom checks: the page's, without `#` and what follows.

    Raise ValidationError for anything but an absolute http(s) URL of sane length.
    """
    bare = url.split("#", 1)[0]
    if not bare or len(bare) > URL_MAX:
        raise ValidationError(f"url: an http(s) URL of at most {URL_MAX} characters")
    try:
        parts = urlsplit(bare)
    except ValueError:
        raise ValidationError("url: not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError("url: an absolute http(s) URL")
    if any(c in bare for c in " \t\r\n"):
        raise ValidationError("url: no whitespace in a page URL")
    return bare


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
    """Sign `url` with both tickets, fetching a ticket only when the shared store has none fresh.

    Raise ValidationError for a URL that is not a page's, and
    bot.sidebar.tickets.TicketUnavailableError when WeCom gives no ticket (45009).
    """
    bare = page_url(url)
    when = now or utcnow()
    corp_ticket = current(TicketKind.CORP, db=db, wecom=wecom, now=when)
    agent_ticket = current(TicketKind.AGENT, db=db, wecom=wecom, now=when)
    timestamp = int(when.timestamp())

    def sign(ticket: str) -> JsSignature:
        nonce = "".join(secrets.choice(_NONCE_CHARS) for _ in range(NONCE_LENGTH))
        return JsSignature(timestamp, nonce, js_signature(ticket, nonce, timestamp, bare))

    return PageSignatures(
        corp_id=wecom.settings.corp_id,
        agent_id=wecom.agent_id,
        corp=sign(corp_ticket.ticket),
        agent=sign(agent_ticket.ticket),
    )

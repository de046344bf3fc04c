"""The JS-SDK tickets, shared by every process through one table (wecom-api.md section 7.6).

One row for the corp's jsapi_ticket and one per app for the agent_config ticket, never one
per page URL: WeCom allows 400 fetches an hour per corp and 100 per app. A ticket is
refreshed when fewer than ten minutes are left (a signature handed out must outlive the
page's `ww.register`), by one process at a time under a lease: plan in a read, call WeCom
outside any transaction, apply in a short write. A refused fetch (45009, the hourly limit)
is remembered for every process, so N page opens do not each ask again.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import ColumnElement, insert, select, update

from bot import leases
from bot.db import Database
from bot.db.models import JsapiTicketRow
from bot.db.types import utcnow
from bot.errors import TagbotError, WeComError
from bot.wecom.client import RATE_LIMITED, WeComClient
from bot.wecom.types import JsapiTicket

log = logging.getLogger(__name__)

# Refresh once fewer than this is left: inside WeCom's advice of 5-10 minutes early.
REFRESH_MARGIN = timedelta(minutes=10)
# A ticket with less than this left is not handed out even when a refresh fails.
MIN_LEFT = timedelta(minutes=1)
# Don't refetch a ticket fetched this recently (WeCom might answer a short expires_in).
MIN_REFETCH = timedelta(seconds=60)
# After 45009 no process asks again for this long (the limit is counted per hour).
REFUSED_BACKOFF = timedelta(minutes=5)
WAIT_POLL_SECONDS = 0.05
NOT_AUTHORISED = 48002  # API not authorised for this app (wecom-api.md section 4)


class TicketKind(StrEnum):
    """Which identity a ticket signs for."""

    CORP = "corp"  # get_jsapi_ticket: getConfigSignature
    AGENT = "agent"  # ticket/get?type=agent_config: getAgentConfigSignature


@dataclass(frozen=True)
class Ticket:
    """A ticket as stored: what it signs for, and until when."""

    kind: TicketKind
    ticket: str
    expires_at: datetime
    fetched_at: datetime

    def left(self, now: datetime) -> timedelta:
        return self.expires_at - now


class TicketUnavailableError(TagbotError):
    """No usable ticket and WeCom gave none: pages cannot be signed for now."""

    def __init__(
        self, kind: TicketKind, reason: str, *, retry_after: datetime | None, errcode: int
    ) -> None:
        self.kind = kind
        self.reason = reason
        self.retry_after = retry_after
        self.errcode = errcode
        super().__init__(f"no {kind} jsapi ticket: {reason}")

    @property
    def message_zh(self) -> str:
        """Say it for staff and operators."""
        which = "企业" if self.kind is TicketKind.CORP else "应用"
        if self.errcode == RATE_LIMITED:
            return f"企业微信本小时的{which} JS-SDK 票据获取次数已用完，请稍后再打开侧边栏"
        if self.errcode == NOT_AUTHORISED:
            return f"应用无权获取{which} JS-SDK 票据（48002），请检查应用 Secret 与接口权限"
        return f"暂时无法从企业微信获取{which} JS-SDK 票据（{self.reason}），请稍后重试"


@dataclass(frozen=True)
class _Row:
    ticket: Ticket | None
    refused_until: datetime | None
    last_error: str


# This process's copy of fresh tickets, per database (a test's database dies with it).
_local: WeakKeyDictionary[Database, dict[tuple[str, TicketKind, int], Ticket]] = WeakKeyDictionary()
_local_lock = threading.Lock()
_refresh_locks: dict[tuple[int, str, TicketKind, int], threading.Lock] = {}


def ticket_key(wecom: WeComClient, kind: TicketKind) -> tuple[str, TicketKind, int]:
    """Key a ticket: per corp for the corp's, per corp + app for the app's."""
    return wecom.settings.corp_id, kind, (wecom.agent_id if kind is TicketKind.AGENT else 0)


def current(
    kind: TicketKind, *, db: Database, wecom: WeComClient, now: datetime | None = None
) -> Ticket:
    """Return a ticket with more than the refresh margin left, fetching it when none is.

    Raise TicketUnavailableError when there is no ticket with a minute left and WeCom
    refuses (or cannot be reached) for a new one.
    """
    when = now or utcnow()
    key = ticket_key(wecom, kind)
    with _local_lock:
        cached = _local.setdefault(db, {}).get(key)
    if cached is not None and cached.left(when) > REFRESH_MARGIN:
        return cached
    with _refresh_lock(db, key):  # one refresher per process; the lease is across them
        ticket = _obtain(kind, key, db=db, wecom=wecom, now=when)
    with _local_lock:
        _local.setdefault(db, {})[key] = ticket
    return ticket


def peek(kind: TicketKind, *, db: Database, wecom: WeComClient) -> Ticket | None:
    """Return the stored ticket of that kind without asking WeCom (None when none)."""
    return _read(db, ticket_key(wecom, kind)).ticket


def _refresh_lock(db: Database, key: tuple[str, TicketKind, int]) -> threading.Lock:
    with _local_lock:
        return _refresh_locks.setdefault((id(db), *key), threading.Lock())


def _lease_name(key: tuple[str, TicketKind, int]) -> str:
    digest = hashlib.sha256(f"{key[0]}\0{key[2]}".encode()).hexdigest()[:40]
    return f"jsapi_ticket:{key[1]}:{digest}"


def _fresh(ticket: Ticket | None, now: datetime) -> Ticket | None:
    """Return the stored ticket if it may be handed out without asking WeCom."""
    if ticket is None:
        return None
    left = ticket.left(now)
    if left > REFRESH_MARGIN or (left > MIN_LEFT and now - ticket.fetched_at < MIN_REFETCH):
        return ticket
    return None


def _settled(kind: TicketKind, row: _Row, now: datetime) -> Ticket | None:
    """What the stored row answers without WeCom: a fresh ticket, or (while WeCom's refusal
    lasts) the old ticket or the refusal; None when a fetch is due."""
    fresh = _fresh(row.ticket, now)
    if fresh is not None:
        return fresh
    if row.refused_until is not None and now < row.refused_until:
        return _fallback(kind, row, now, row.last_error, RATE_LIMITED)
    return None


def _usable(ticket: Ticket | None, now: datetime) -> Ticket | None:
    return ticket if ticket is not None and ticket.left(now) > MIN_LEFT else None


def _obtain(
    kind: TicketKind,
    key: tuple[str, TicketKind, int],
    *,
    db: Database,
    wecom: WeComClient,
    now: datetime,
) -> Ticket:
    lease_seconds = max(30.0, 2 * wecom.settings.timeout_seconds + 5)
    deadline = time.monotonic() + lease_seconds + 5
    owner = leases.new_owner()
    while True:
        row = _read(db, key)  # plan
        settled = _settled(kind, row, now)
        if settled is not None:
            return settled
        with leases.holding(db, _lease_name(key), owner, lease_seconds) as held:
            if held:
                return _refresh(kind, key, db=db, wecom=wecom, now=now)
        # Another process is fetching: a ticket with a minute left beats waiting for it.
        usable = _usable(row.ticket, now)
        if usable is not None:
            return usable
        if time.monotonic() > deadline:
            raise TicketUnavailableError(
                kind, "another process is still fetching it", retry_after=None, errcode=-2
            )
        time.sleep(WAIT_POLL_SECONDS)


def _refresh(
    kind: TicketKind,
    key: tuple[str, TicketKind, int],
    *,
    db: Database,
    wecom: WeComClient,
    now: datetime,
) -> Ticket:
    """Fetch a ticket and store it; the caller holds the lease."""
    row = _read(db, key)  # the previous holder may have stored one just now
    settled = _settled(kind, row, now)
    if settled is not None:
        return settled
    try:
        answer: JsapiTicket = (  # call: outside any transaction
            wecom.get_jsapi_ticket() if kind is TicketKind.CORP else wecom.get_agent_ticket()
        )
    except WeComError as err:
        log.warning("jsapi ticket (%s) fetch failed: %s", kind, err)
        refused = now + REFUSED_BACKOFF if err.errcode == RATE_LIMITED else None
        reason = f"{err.errcode} {err.errmsg}"[:255]
        _store_refusal(db, key, now=now, refused_until=refused, reason=reason)
        return _fallback(kind, row, now, reason, err.errcode, retry_after=refused)
    ticket = Ticket(kind, answer.ticket, now + timedelta(seconds=answer.expires_in), now)
    _store(db, key, ticket)  # apply
    return ticket


def _fallback(
    kind: TicketKind,
    row: _Row,
    now: datetime,
    reason: str,
    errcode: int,
    *,
    retry_after: datetime | None = None,
) -> Ticket:
    """Hand out the stored ticket while it still works, else say why there is none."""
    usable = _usable(row.ticket, now)
    if usable is not None:
        return usable
    raise TicketUnavailableError(
        kind, reason or "refused", retry_after=retry_after or row.refused_until, errcode=errcode
    )


def _the_row(key: tuple[str, TicketKind, int]) -> tuple[ColumnElement[bool], ...]:
    corp_id, kind, agent_id = key
    return (
        JsapiTicketRow.corp_id == corp_id,
        JsapiTicketRow.kind == kind.value,
        JsapiTicketRow.agent_id == agent_id,
    )


def _read(db: Database, key: tuple[str, TicketKind, int]) -> _Row:
    kind = key[1]
    with db.read() as session:
        found = session.execute(select(JsapiTicketRow).where(*_the_row(key))).scalar_one_or_none()
    if found is None:
        return _Row(None, None, "")
    ticket = (
        Ticket(kind, found.ticket, found.expires_at, found.fetched_at) if found.ticket else None
    )
    return _Row(ticket, found.refused_until, found.last_error)


def _store(db: Database, key: tuple[str, TicketKind, int], ticket: Ticket) -> None:
    fetched = {
        "ticket": ticket.ticket,
        "expires_at": ticket.expires_at,
        "fetched_at": ticket.fetched_at,
        "refused_until": None,
        "last_error": "",
    }
    _upsert(db, key, fetched)


def _store_refusal(
    db: Database,
    key: tuple[str, TicketKind, int],
    *,
    now: datetime,
    refused_until: datetime | None,
    reason: str,
) -> None:
    """Remember a failed fetch; a stored ticket stays (it may still work for a while)."""
    refusal = {"refused_until": refused_until, "last_error": reason}
    _upsert(db, key, refusal, first={"ticket": "", "expires_at": now, "fetched_at": now})


def _upsert(
    db: Database,
    key: tuple[str, TicketKind, int],
    values: dict[str, Any],
    *,
    first: dict[str, Any] | None = None,
) -> None:
    """Set `values` on the key's row, inserting it (with `first` besides) when there is none."""
    corp_id, kind, agent_id = key
    with db.write() as session:
        done = session.execute(
            update(JsapiTicketRow)
            .where(*_the_row(key))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if not done.rowcount:  # type: ignore[attr-defined]
            session.execute(
                insert(JsapiTicketRow).values(
                    corp_id=corp_id, kind=kind.value, agent_id=agent_id, **(first or {}), **values
                )
            )

"""Share one access token between processes through the database (doc 91039).

WeCom throttles gettoken and a token is per app, so every process reads the same
`wecom_tokens` row; one process at a time refreshes it while holding a lease.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from bot import leases
from bot.db import Database
from bot.db.models import WeComToken
from bot.db.types import utcnow
from bot.errors import WeComError

# fetch() returns (access_token, expires_in seconds) or raises WeComError.
Fetch = Callable[[], tuple[str, int]]


def token_key(corp_id: str, secret: str) -> str:
    """Name a token by corp and a hash of the secret (never the secret itself)."""
    digest = hashlib.sha256(f"{corp_id}\0{secret}".encode()).hexdigest()[:32]
    return f"{corp_id[:64]}:{digest}"


@dataclass(frozen=True)
class _Cached:
    token: str
    expires_at: datetime
    fetched_at: datetime


class TokenStore:
    """Hand out a valid token, refreshing it in one process at a time before it expires."""

    def __init__(
        self,
        db: Database,
        key: str,
        fetch: Fetch,
        *,
        refresh_margin: float = 300.0,
        min_refetch_interval: float = 60.0,
        lease_seconds: float = 30.0,
        poll_seconds: float = 0.05,
    ) -> None:
        self._db = db
        self._key = key
        self._fetch = fetch
        self._margin = timedelta(seconds=refresh_margin)
        self._min_interval = timedelta(seconds=min_refetch_interval)
        self._lease_name = f"wecom_token:{hashlib.sha256(key.encode()).hexdigest()[:40]}"
        self._lease_seconds = lease_seconds
        self._poll = poll_seconds
        self._owner = f"{uuid.uuid4().hex}"
        self._cached: _Cached | None = None
        self._lock = threading.Lock()  # one refresher per process; others wait on it

    def get(self) -> str:
        """Return a token with more than the refresh margin left, refreshing if needed."""
        cached = self._cached
        if cached and self._fresh(cached, None):
            return cached.token
        return self._obtain(bad=None)

    def invalidate(self, bad: str) -> str:
        """Replace a token WeCom rejected (40014/42001) and return the new one."""
        return self._obtain(bad=bad)

    def _obtain(self, bad: str | None) -> str:
        with self._lock:
            cached = self._cached
            if cached and self._fresh(cached, bad):
                return cached.token  # another thread refreshed it while we waited
            deadline = time.monotonic() + self._lease_seconds + 5
            while True:
                row = self._read()
                now = utcnow()
                if row and self._fresh(row, bad):
                    self._cached = row
                    return row.token
                with leases.holding(
                    self._db, self._lease_name, self._owner, self._lease_seconds
                ) as held:
                    if held:
                        return self._refresh(bad)
                # Someone else is refreshing; a token that still works beats waiting.
                if row and row.token != bad and row.expires_at - now > timedelta(seconds=5):
                    return row.token
                if time.monotonic() > deadline:
                    raise WeComError(
                        -2,
                        "timed out waiting for another process to refresh the token",
                        api="gettoken",
                        retryable=True,
                    )
                time.sleep(self._poll)

    def _refresh(self, bad: str | None) -> str:
        """Fetch a new token from WeCom and store it (caller holds the lease)."""
        row = self._read()  # the previous holder may have just refreshed it
        if row and self._fresh(row, bad):
            self._cached = row
            return row.token
        token, expires_in = self._fetch()
        now = utcnow()
        fresh = _Cached(token, now + timedelta(seconds=expires_in), now)
        with self._db.write() as session:
            values = {"access_token": token, "expires_at": fresh.expires_at, "updated_at": now}
            done = session.execute(
                update(WeComToken)
                .where(WeComToken.key == self._key)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if not done.rowcount:  # type: ignore[attr-defined]
                session.execute(insert(WeComToken).values(key=self._key, **values))
        self._cached = fresh
        return token

    def _read(self) -> _Cached | None:
        with self._db.read() as session:
            row = session.execute(
                select(WeComToken.access_token, WeComToken.expires_at, WeComToken.updated_at).where(
                    WeComToken.key == self._key
                )
            ).first()
        if row is None or not row.access_token:
            return None
        return _Cached(row.access_token, row.expires_at, row.updated_at)

    def _fresh(self, cached: _Cached, bad: str | None) -> bool:
        """Tell whether a token may be used without asking WeCom for a new one."""
        if cached.token == bad:
            return False
        now = utcnow()
        left = cached.expires_at - now
        if left > self._margin:
            return True
        # WeCom hands out the same token until it expires, so refetching inside the
        # margin returns it again: rate-limit those refetches instead of storming gettoken.
        return left > timedelta(0) and now - cached.fetched_at < self._min_interval

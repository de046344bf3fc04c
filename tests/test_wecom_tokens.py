"""The database-shared token and the per-API rate limiter, without WeCom."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from bot.db import Database
from bot.db.models import WeComToken
from bot.db.types import utcnow
from bot.errors import WeComError
from bot.wecom.ratelimit import RateLimiter
from bot.wecom.tokens import TokenStore, token_key
from tests.support.clock import PassingClock


class Issuer:
    """Stands in for gettoken: counts calls and hands out numbered tokens slowly."""

    def __init__(self, delay: float = 0.05, expires_in: int = 7200) -> None:
        self.calls = 0
        self.delay = delay
        self.expires_in = expires_in
        self.lock = threading.Lock()

    def __call__(self) -> tuple[str, int]:
        with self.lock:
            self.calls += 1
            n = self.calls
        time.sleep(self.delay)
        return f"token-{n}", self.expires_in


def test_key_hides_the_secret() -> None:
    key = token_key("wwcorp", "super-secret-value")
    assert key.startswith("wwcorp:")
    assert "super" not in key
    assert len(key) <= 128
    assert key != token_key("wwcorp", "another-secret")


def test_token_is_fetched_once_and_stored(db: Database) -> None:
    issuer = Issuer()
    store = TokenStore(db, "k", issuer)
    assert store.get() == "token-1"
    assert store.get() == "token-1"
    with db.read() as s:
        row = s.execute(select(WeComToken)).scalar_one()
    assert row.access_token == "token-1"
    assert row.expires_at - utcnow() > timedelta(seconds=7000)
    # A second store (another process) reads the row instead of fetching.
    assert TokenStore(db, "k", issuer).get() == "token-1"
    assert issuer.calls == 1


def test_concurrent_stores_fetch_once(db: Database) -> None:
    issuer = Issuer(delay=0.3)
    stores = [TokenStore(db, "k", issuer) for _ in range(6)]
    got: list[str] = []
    threads = [threading.Thread(target=lambda s=s: got.append(s.get())) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == ["token-1"] * 6
    assert issuer.calls == 1


def test_refresh_before_expiry_and_invalidate(db: Database) -> None:
    issuer = Issuer(delay=0)
    store = TokenStore(db, "k", issuer, refresh_margin=300)
    assert store.get() == "token-1"
    # Less than the margin left: the next get refreshes, for every process.
    with db.write() as s:
        s.execute(
            update(WeComToken).values(
                expires_at=utcnow() + timedelta(seconds=200),
                updated_at=utcnow() - timedelta(seconds=120),
            )
        )
    other = TokenStore(db, "k", issuer, refresh_margin=300)
    assert other.get() == "token-2"
    assert issuer.calls == 2
    # `store` still trusts its cached copy; once WeCom rejects it, it adopts the row.
    assert store.invalidate("token-1") == "token-2"
    assert issuer.calls == 2
    # A rejected token is replaced once; a second process seeing the same bad token
    # picks up the replacement instead of fetching again.
    assert store.invalidate("token-2") == "token-3"
    assert other.invalidate("token-2") == "token-3"
    assert issuer.calls == 3


def test_short_lived_token_does_not_storm_gettoken(db: Database) -> None:
    issuer = Issuer(delay=0, expires_in=100)  # less than the 300 s refresh margin
    store = TokenStore(db, "k", issuer, refresh_margin=300, min_refetch_interval=60)
    assert {store.get() for _ in range(20)} == {"token-1"}
    assert TokenStore(db, "k", issuer).get() == "token-1"
    assert issuer.calls == 1


def test_fetch_failure_propagates_and_releases_the_lease(db: Database) -> None:
    def refuse() -> tuple[str, int]:
        raise WeComError(40001, "invalid credential", api="gettoken")

    store = TokenStore(db, "k", refuse)
    with pytest.raises(WeComError) as err:
        store.get()
    assert err.value.errcode == 40001
    issuer = Issuer(delay=0)
    assert TokenStore(db, "k", issuer, lease_seconds=30).get() == "token-1"


def test_rate_limiter_lets_a_burst_through_then_spreads_calls() -> None:
    clock = PassingClock()
    # at most 10 in any second
    limiter = RateLimiter(calls_per_minute=10, window=1.0, clock=clock, sleep=clock.sleep)
    stamps: list[float] = []
    for _ in range(25):
        limiter.acquire("a")
        stamps.append(clock())
    assert stamps[9] == 0.0  # the first 10 go at once
    assert 2.0 <= stamps[-1] < 2.5  # the rest wait for the window to slide
    for i in range(len(stamps) - 10):
        assert stamps[i + 10] - stamps[i] >= 0.99  # never 11 within one window
    waits = len(clock.slept)
    assert limiter.acquire("b") == 0.0  # another API has its own window
    assert len(clock.slept) == waits


def test_rate_limiter_is_thread_safe() -> None:
    limiter = RateLimiter(calls_per_minute=20, window=0.5)
    stamps: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(10):
            limiter.acquire("x")
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(6)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 60 calls at 20 per half second: three windows' worth, so at least 1 s
    assert time.monotonic() - started >= 0.99
    stamps.sort()
    for i in range(len(stamps) - 20):
        assert stamps[i + 20] - stamps[i] >= 0.49

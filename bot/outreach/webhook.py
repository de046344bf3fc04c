"""Webhook campaigns: a run's audience POSTed in batches to the operator's URL, signed.

Reach beyond WeCom (SMS, e-mail, a call centre): the executor (`bot.outreach.execute`)
batches a run's treatment deliveries into campaign_tasks rows (kind webhook, sender "",
batch 0..n, BATCH_SIZE customers each) and claims them (`bot.outreach.claims`); `perform`
POSTs one claimed batch as JSON with these headers:

- `X-Tagbot-Delivery: <run_id>-<batch>`: the idempotency key. Every attempt of a batch
  carries the same key; the receiver must treat a key it has seen as done.
- `X-Tagbot-Timestamp: <unix seconds>` of this attempt.
- `X-Tagbot-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">` with the
  campaign's webhook_secret (`bot.outreach.signature`); absent when no secret is set.

A 2xx marks the batch `sent` and its deliveries `delivered`. A 5xx, 408, 429, timeout or
connection error is retried with exponential, jittered backoff (`next_attempt_at`, at
least a Retry-After) up to MAX_ATTEMPTS, then the batch and its deliveries are `failed`;
any other status (4xx, a redirect) fails them at once with the status and the start of
the answer.

Unlike a 群发, a webhook may be sent again safely: the claim records the task `calling`
before the POST, and a process that dies after that leaves it `calling` with a claim
deadline (`locked_until`). Once the deadline passes the claim takes it again as a new
attempt and the batch is POSTed again under the same X-Tagbot-Delivery, which the
receiver dedupes on. So a crash costs at most one duplicate request, never a duplicate
message, provided the receiver dedupes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.config import CampaignSettings
from bot.db import Database
from bot.db.models import CampaignDelivery, CampaignTask, Customer
from bot.logredact import redact
from bot.outreach.claims import Claimed
from bot.outreach.signature import sign
from bot.queue import backoff_seconds
from bot.states import DeliveryStatus, TaskStatus
from bot.wecom.client import WeComClient

log = logging.getLogger(__name__)

KIND = "webhook"

BATCH_SIZE = 500
MAX_ATTEMPTS = 8
# 4 s, 16 s, 64 s ... capped at an hour: about 2.5 hours of a receiver's outage survived.
BACKOFF_BASE = 4.0
BACKOFF_CAP = 3600.0
TIMEOUT = (5.0, 15.0)  # connect, read (seconds)
ANSWER_BYTES = 4096  # read at most this much of an answer; a receiver may be hostile
ERROR_BODY_CHARS = 200
USER_AGENT = "wecom-tagbot-webhook"

POSTS = Counter(
    "tagbot_outreach_webhook_posts_total",
    "Webhook batch POSTs by outcome: sent, retry, failed",
    ["outcome"],
    registry=None,
)
METRICS = (POSTS,)

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class _Claim:
    """What one attempt needs once the write that recorded it has committed."""

    task_id: int
    run_id: int
    batch: int
    attempts: int
    campaign: str
    customers: list[dict[str, str | None]]


def perform(
    task: Claimed,
    campaign: CampaignSettings,
    clock: Clock,
    *,
    db: Database,
    wecom: WeComClient,
    alerts_wakeup: threading.Event,
    timeout: tuple[float, float] = TIMEOUT,
) -> None:
    """POST a webhook batch the executor's queue claimed (bot.outreach.claims).

    The claim already recorded the attempt; a task found `calling` after a crash is simply
    sent again under the same X-Tagbot-Delivery key, which the receiver dedupes on.
    `wecom` and `alerts_wakeup` are the other actions' parts: a webhook needs neither.
    """
    del wecom, alerts_wakeup
    with db.read() as session:
        customers = _customers(session, task.id)
    claim = _Claim(task.id, task.run_id, task.batch, task.attempts, task.campaign, customers)
    _attempt(db, claim, campaign, now=clock, timeout=timeout)


def _attempt(
    db: Database,
    claim: _Claim,
    settings: CampaignSettings,
    *,
    now: Clock,
    timeout: tuple[float, float],
) -> str:
    """POST one claimed batch and record the outcome; return the task's status."""
    if settings.action != KIND or not settings.webhook_url:
        reason = f"campaign {claim.campaign!r} is no longer configured with a webhook_url"
        return _record_failed(db, claim, reason, now())
    url = settings.webhook_url
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    attempted = now()
    body = _body(claim, attempted, settings.text)
    headers = _headers(claim, int(attempted.timestamp()), body, secret)
    where = _safe_url(url, secret)
    try:
        with requests.post(
            url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
        ) as resp:
            code = resp.status_code
            answer = _read_answer(resp)
            retry_after = _retry_after(resp.headers.get("Retry-After"))
    except requests.RequestException as exc:
        error = redact(f"{type(exc).__name__}: {exc}", [secret])
        log.warning("webhook %s batch %s to %s: %s", claim.run_id, claim.batch, where, error)
        return _record_retry(db, claim, error, now(), None)
    if 200 <= code < 300:
        log.info("webhook %s batch %s to %s: HTTP %s", claim.run_id, claim.batch, where, code)
        return _record_sent(db, claim, now())
    error = redact(f"HTTP {code}: {answer[:ERROR_BODY_CHARS]}", [secret])
    log.warning("webhook %s batch %s to %s: HTTP %s", claim.run_id, claim.batch, where, code)
    if code >= 500 or code in (408, 429):
        return _record_retry(db, claim, error, now(), retry_after)
    return _record_failed(db, claim, error, now())


# --- the steps ---------------------------------------------------------------------------


def _customers(session: Session, task_id: int) -> list[dict[str, str | None]]:
    """Return the batch's customers as the webhook body lists them."""
    rows = session.execute(
        select(
            Customer.external_userid,
            Customer.unionid,
            Customer.name,
            CampaignDelivery.tier,
            CampaignDelivery.staff_userid,
        )
        .join(Customer, Customer.id == CampaignDelivery.customer_id)
        .where(CampaignDelivery.task_id == task_id)
        .order_by(CampaignDelivery.id)
    ).all()
    return [
        {"external_userid": r[0], "unionid": r[1], "name": r[2], "tier": r[3], "staff_userid": r[4]}
        for r in rows
    ]


def _body(claim: _Claim, attempted: datetime, text: str) -> bytes:
    payload: dict[str, Any] = {
        "campaign": claim.campaign,
        "run_id": claim.run_id,
        "batch": claim.batch,
        "sent_at": attempted.isoformat(timespec="seconds"),
        "text": text,
        "customers": claim.customers,
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _headers(claim: _Claim, timestamp: int, body: bytes, secret: str) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "X-Tagbot-Delivery": f"{claim.run_id}-{claim.batch}",
        "X-Tagbot-Timestamp": str(timestamp),
    }
    if secret:
        headers["X-Tagbot-Signature"] = sign(secret, timestamp, body)
    return headers


def _read_answer(resp: requests.Response) -> str:
    raw = resp.raw.read(ANSWER_BYTES, decode_content=True) or b""
    return raw.decode("utf-8", errors="replace")


def _retry_after(value: str | None) -> float | None:
    """Return a Retry-After in seconds (the delta form only; a date is ignored)."""
    if value is None or not value.strip().isdigit():
        return None
    return min(float(value.strip()), BACKOFF_CAP)


def _safe_url(url: str, secret: str) -> str:
    """The URL for a log line: no user:password, no secret-bearing query values."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return redact(urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), [secret])


def _finish(
    session: Session, claim: _Claim, task_values: dict[str, Any], delivery_values: dict[str, Any]
) -> bool:
    """Record an attempt's outcome, unless another worker has since claimed the task."""
    result = session.execute(
        update(CampaignTask)
        .where(
            CampaignTask.id == claim.task_id,
            CampaignTask.status == TaskStatus.CALLING,
            CampaignTask.attempts == claim.attempts,
        )
        .values(locked_until=None, **task_values)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    if delivery_values:
        session.execute(
            update(CampaignDelivery)
            .where(
                CampaignDelivery.task_id == claim.task_id,
                CampaignDelivery.status == DeliveryStatus.QUEUED,
            )
            .values(**delivery_values)
        )
    return True


def _current(session: Session, task_id: int) -> str:
    return session.scalars(select(CampaignTask.status).where(CampaignTask.id == task_id)).one()


def _record_sent(db: Database, claim: _Claim, at: datetime) -> str:
    with db.write() as session:
        task = {"status": TaskStatus.SENT, "finished_at": at, "last_error": None}
        if not _finish(session, claim, task, {"status": DeliveryStatus.DELIVERED, "sent_at": at}):
            return _current(session, claim.task_id)
    POSTS.labels("sent").inc()
    return TaskStatus.SENT


def _record_failed(db: Database, claim: _Claim, error: str, at: datetime) -> str:
    with db.write() as session:
        task = {"status": TaskStatus.FAILED, "finished_at": at, "last_error": error}
        if not _finish(session, claim, task, {"status": DeliveryStatus.FAILED}):
            return _current(session, claim.task_id)
    POSTS.labels("failed").inc()
    log.warning("webhook %s batch %s failed: %s", claim.run_id, claim.batch, error)
    return TaskStatus.FAILED


def _record_retry(
    db: Database, claim: _Claim, error: str, at: datetime, retry_after: float | None
) -> str:
    if claim.attempts >= MAX_ATTEMPTS:
        return _record_failed(db, claim, f"after {claim.attempts} attempts: {error}", at)
    wait = backoff_seconds(claim.attempts, base=BACKOFF_BASE, cap=BACKOFF_CAP)
    if retry_after is not None:
        wait = max(wait, retry_after)
    task = {
        "status": TaskStatus.PENDING,
        "next_attempt_at": at + timedelta(seconds=wait),
        "last_error": error,
    }
    with db.write() as session:
        if not _finish(session, claim, task, {}):
            return _current(session, claim.task_id)
    POSTS.labels("retry").inc()
    return TaskStatus.PENDING

"""Webhook campaigns: a run's audience POSTed in batches to the operator's URL, signed.

Reach beyond WeCom (SMS, e-mail, a call centre): each batch of a run's treatment
deliveries is one campaign_tasks row (kind webhook, sender "", batch 0..n), made in the
planner's or dispatcher's write, then POSTed as JSON with these headers:

- `X-Tagbot-Delivery: <run_id>-<batch>`: the idempotency key. Every attempt of a batch
  carries the same key; the receiver must treat a key it has seen as done.
- `X-Tagbot-Timestamp: <unix seconds>` of this attempt.
- `X-Tagbot-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">` with the
  campaign's webhook_secret (`bot.outreach.signature`); absent when no secret is set.

A 2xx marks the batch `sent` and its deliveries `delivered`. A 5xx, 408, 429, timeout or
connection error is retried with exponential, jittered backoff (`next_attempt_at`) up to
MAX_ATTEMPTS, then the batch and its deliveries are `failed`; any other status (4xx, a
redirect) fails them at once with the status and the start of the answer.

Unlike a 群发, a webhook may be sent again safely: the task is recorded `calling` before
the POST, and a process that dies after that leaves it `calling` with a claim deadline
(`locked_until`). Once the deadline passes the task is due again and the batch is POSTed
again under the same X-Tagbot-Delivery, which the receiver dedupes on. So a crash costs
at most one duplicate request, never a duplicate message, provided the receiver dedupes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import requests
from prometheus_client import Counter
from sqlalchemy import Table, func, select, update
from sqlalchemy.orm import Session

from bot.config import CampaignSettings
from bot.db.models import Campaign, CampaignDelivery, CampaignRun, CampaignTask, Customer
from bot.db.types import utcnow
from bot.logredact import redact
from bot.outreach.claims import Claimed
from bot.outreach.signature import sign
from bot.queue import Queue, backoff_seconds
from bot.runtime import Runtime

log = logging.getLogger(__name__)

KIND = "webhook"
SENDER = ""  # webhook tasks have no WeCom sender: (run, "", batch) is the unique key
PENDING = "pending"
CALLING = "calling"
SENT = "sent"
FAILED = "failed"
FINAL = (SENT, FAILED)

BATCH_SIZE = 500
MAX_ATTEMPTS = 8
# 4 s, 16 s, 64 s ... capped at an hour: about 2.5 hours of a receiver's outage survived.
BACKOFF_BASE = 4.0
BACKOFF_CAP = 3600.0
TIMEOUT = (5.0, 15.0)  # connect, read (seconds)
# A POST is over within the timeouts; past this a `calling` task's worker is taken as dead.
CLAIM_SECONDS = 60.0
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

# Due like a queue row: pending and its time has come, or `calling` past the claim deadline.
QUEUE = Queue(
    table=cast(Table, CampaignTask.__table__),
    taken=CALLING,
    statuses=(PENDING, CALLING, SENT, FAILED),
    max_attempts=MAX_ATTEMPTS,
    claim_seconds=CLAIM_SECONDS,
)

Clock = Callable[[], datetime]


def create_webhook_tasks(session: Session, run_id: int, *, batch_size: int = BATCH_SIZE) -> int:
    """Batch a run's planned treatment deliveries into webhook tasks; return how many were made.

    Runs inside the caller's write. Deliveries are taken in a stable order (by id) and set
    `queued` with their task; a second call finds none planned and makes nothing, and new
    batches are numbered after the run's existing ones, so (run, "", batch) never clashes.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    run = session.get(CampaignRun, run_id)
    if run is None:
        raise ValueError(f"no campaign run {run_id}")
    planned = (
        CampaignDelivery.run_id == run_id,
        CampaignDelivery.arm == "treatment",
        CampaignDelivery.status == "planned",
    )
    delivery_ids = list(
        session.scalars(select(CampaignDelivery.id).where(*planned).order_by(CampaignDelivery.id))
    )
    if not delivery_ids:
        return 0
    last = session.scalar(
        select(func.max(CampaignTask.batch)).where(
            CampaignTask.run_id == run_id, CampaignTask.sender == SENDER
        )
    )
    first = 0 if last is None else last + 1
    now = utcnow()
    made = 0
    for start in range(0, len(delivery_ids), batch_size):
        chunk = delivery_ids[start : start + batch_size]
        task = CampaignTask(
            run_id=run_id,
            campaign_id=run.campaign_id,
            kind=KIND,
            sender=SENDER,
            batch=first + made,
            customers=len(chunk),
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        session.add(task)
        session.flush()
        # By id range (the batch is every planned id in it): no bound-parameter limit.
        session.execute(
            update(CampaignDelivery)
            .where(*planned, CampaignDelivery.id.between(chunk[0], chunk[-1]))
            .values(status="queued", task_id=task.id)
        )
        made += 1
    return made


@dataclass(frozen=True)
class _Claim:
    """What one attempt needs once the write that recorded it has committed."""

    task_id: int
    run_id: int
    batch: int
    attempts: int
    campaign: str
    customers: list[dict[str, str | None]]


def perform_webhook_task(
    rt: Runtime,
    task_id: int,
    *,
    now: Clock = utcnow,
    timeout: tuple[float, float] = TIMEOUT,
) -> str:
    """POST one webhook batch if it is due; return the task's status afterwards.

    A task already sent or failed is left alone (nothing is sent again); one waiting for
    its next attempt, or held by another worker, is returned as it is (`pending`,
    `calling`). `now` is the clock for attempt times and backoff (tests pass their own).
    """
    with rt.db.write() as session:
        claim, status = _claim(session, task_id, now())
    if claim is None:
        return status
    return _attempt(rt, claim, now=now, timeout=timeout)


def perform(rt: Runtime, task: Claimed, campaign: CampaignSettings, clock: Clock) -> None:
    """Attempt a webhook task the executor's queue claimed (bot.outreach.claims).

    The claim already recorded the attempt; a task found `calling` after a crash is simply
    sent again under the same X-Tagbot-Delivery key, which the receiver dedupes on.
    """
    with rt.db.read() as session:
        customers = _customers(session, task.id)
    claim = _Claim(task.id, task.run_id, task.batch, task.attempts, task.campaign, customers)
    _attempt(rt, claim, now=clock, timeout=TIMEOUT)


def _attempt(rt: Runtime, claim: _Claim, *, now: Clock, timeout: tuple[float, float]) -> str:
    """POST one claimed batch and record the outcome; return the task's status."""
    settings = _campaign_settings(rt, claim.campaign)
    if settings is None or not settings.webhook_url:
        reason = f"campaign {claim.campaign!r} is no longer configured with a webhook_url"
        return _record_failed(rt, claim, reason, now())
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
        return _record_retry(rt, claim, error, now(), None)
    if 200 <= code < 300:
        log.info("webhook %s batch %s to %s: HTTP %s", claim.run_id, claim.batch, where, code)
        return _record_sent(rt, claim, now())
    error = redact(f"HTTP {code}: {answer[:ERROR_BODY_CHARS]}", [secret])
    log.warning("webhook %s batch %s to %s: HTTP %s", claim.run_id, claim.batch, where, code)
    if code >= 500 or code in (408, 429):
        return _record_retry(rt, claim, error, now(), retry_after)
    return _record_failed(rt, claim, error, now())


def due_webhook_tasks(session: Session, now: datetime) -> list[int]:
    """Return the ids of webhook tasks due for an attempt (retries, abandoned attempts)."""
    return list(
        session.scalars(
            select(CampaignTask.id)
            .where(CampaignTask.kind == KIND, QUEUE.due(now))
            .order_by(CampaignTask.next_attempt_at, CampaignTask.id)
        )
    )


def perform_due_webhook_tasks(rt: Runtime, *, now: Clock = utcnow) -> dict[str, int]:
    """Attempt every due webhook task once; return how many ended in each status."""
    with rt.db.read() as session:
        ids = due_webhook_tasks(session, now())
    outcome: dict[str, int] = {}
    for task_id in ids:
        status = perform_webhook_task(rt, task_id, now=now)
        outcome[status] = outcome.get(status, 0) + 1
    return outcome


# --- the steps ---------------------------------------------------------------------------


def _claim(session: Session, task_id: int, now: datetime) -> tuple[_Claim | None, str]:
    """Record an attempt (`calling`, attempts, attempted_at) when the task is due."""
    task = session.scalars(
        select(CampaignTask).where(CampaignTask.id == task_id).with_for_update()
    ).one_or_none()
    if task is None:
        raise ValueError(f"no campaign task {task_id}")
    if task.kind != KIND:
        raise ValueError(f"campaign task {task_id} is a {task.kind} task, not a webhook")
    due = (task.status == PENDING and task.next_attempt_at <= now) or (
        task.status == CALLING and (task.locked_until is None or task.locked_until < now)
    )
    if not due:
        return None, task.status
    task.status = CALLING
    task.attempts += 1
    task.attempted_at = now
    task.locked_until = QUEUE.claim_deadline(now)
    campaign = session.scalars(select(Campaign.name).where(Campaign.id == task.campaign_id)).one()
    claim = _Claim(
        task.id, task.run_id, task.batch, task.attempts, campaign, _customers(session, task_id)
    )
    return claim, CALLING


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


def _campaign_settings(rt: Runtime, name: str) -> CampaignSettings | None:
    for campaign in rt.settings.outreach.campaigns:
        if campaign.name == name and campaign.action == KIND:
            return campaign
    return None


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
            CampaignTask.status == CALLING,
            CampaignTask.attempts == claim.attempts,
        )
        .values(locked_until=None, **task_values)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    if delivery_values:
        session.execute(
            update(CampaignDelivery)
            .where(CampaignDelivery.task_id == claim.task_id, CampaignDelivery.status == "queued")
            .values(**delivery_values)
        )
    return True


def _current(session: Session, task_id: int) -> str:
    return session.scalars(select(CampaignTask.status).where(CampaignTask.id == task_id)).one()


def _record_sent(rt: Runtime, claim: _Claim, at: datetime) -> str:
    with rt.db.write() as session:
        task = {"status": SENT, "finished_at": at, "last_error": None}
        if not _finish(session, claim, task, {"status": "delivered", "sent_at": at}):
            return _current(session, claim.task_id)
    POSTS.labels("sent").inc()
    return SENT


def _record_failed(rt: Runtime, claim: _Claim, error: str, at: datetime) -> str:
    with rt.db.write() as session:
        task = {"status": FAILED, "finished_at": at, "last_error": error}
        if not _finish(session, claim, task, {"status": "failed"}):
            return _current(session, claim.task_id)
    POSTS.labels("failed").inc()
    log.warning("webhook %s batch %s failed: %s", claim.run_id, claim.batch, error)
    return FAILED


def _record_retry(
    rt: Runtime, claim: _Claim, error: str, at: datetime, retry_after: float | None
) -> str:
    if claim.attempts >= MAX_ATTEMPTS:
        return _record_failed(rt, claim, f"after {claim.attempts} attempts: {error}", at)
    wait = backoff_seconds(claim.attempts, base=BACKOFF_BASE, cap=BACKOFF_CAP)
    if retry_after is not None:
        wait = max(wait, retry_after)
    task = {"status": PENDING, "next_attempt_at": at + timedelta(seconds=wait), "last_error": error}
    with rt.db.write() as session:
        if not _finish(session, claim, task, {}):
            return _current(session, claim.task_id)
    POSTS.labels("retry").inc()
    return PENDING

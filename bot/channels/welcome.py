"""Welcome messages (欢迎语): render a channel's template and send it with the WelcomeCode.

Also what the welcome for one add event reads (the channel context and the staff name,
from a short-lived cache each process keeps) and the tally of welcomes missed. See
https://developer.work.weixin.qq.com/document/path/92599 (send_welcome_msg).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Histogram
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.channels.lookup import get_by_state
from bot.config import AttachmentSettings, Settings
from bot.db import Database
from bot.db.models import Staff
from bot.db.types import utcnow
from bot.errors import ValidationError, WeComError
from bot.tags import catalogue
from bot.tags.catalogue import TagPath
from bot.wecom.client import WeComClient
from bot.wecom.events import CallbackEvent
from bot.wecom_limits import ATTACHMENTS_MAX, WELCOME_CODE_SECONDS, WELCOME_TEXT_MAX_BYTES

log = logging.getLogger(__name__)

ALREADY_SENT = 41051  # the customer already got a welcome or a chat started: done
OTHER_APP_SENDING = 41096  # another app holds the code for now; may retry within 20 s
NO_RELATION = 84061  # the customer deleted the member before the welcome went out

OUTCOMES = Counter(
    "tagbot_welcome_total", "Welcome messages by outcome", ["outcome"], registry=None
)
LATENCY = Histogram(
    "tagbot_welcome_latency_seconds",
    "Time from a callback's arrival to its welcome message being accepted by WeCom",
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2, 5, 10, 20),
    registry=None,
)
MISSED = Counter(
    "tagbot_welcomes_missed",
    "Welcomes never sent: the code expired in a backlog, or WeCom refused the message",
    ["reason"],
    registry=None,
)
METRICS = (OUTCOMES, LATENCY, MISSED)
MISSED_OUTCOMES = frozenset({"expired", "failed"})  # customer_gone and already_sent are not ours


def _age(received_at: datetime) -> float:
    return max(0.0, (utcnow() - received_at).total_seconds())


def attachment_from_settings(a: AttachmentSettings) -> dict[str, Any]:
    """Turn a configured attachment into send_welcome_msg's attachment object."""
    if a.type == "link":
        if not a.url or not a.title:
            raise ValidationError("链接附件需要 title 和 url / link attachment needs title and url")
        link = {"title": a.title, "url": a.url}
        if a.desc:
            link["desc"] = a.desc
        if a.picurl:
            link["picurl"] = a.picurl
        return {"msgtype": "link", "link": link}
    if a.type == "image":
        if a.media_id:
            return {"msgtype": "image", "image": {"media_id": a.media_id}}
        if a.picurl:
            return {"msgtype": "image", "image": {"pic_url": a.picurl}}
        raise ValidationError("图片附件需要 media_id 或 picurl / image needs media_id or picurl")
    if not (a.title and a.appid and a.page and a.media_id):
        raise ValidationError(
            "小程序附件需要 title、appid、page、media_id / miniprogram needs title, appid, page,"
            " media_id"
        )
    return {
        "msgtype": "miniprogram",
        "miniprogram": {
            "title": a.title,
            "pic_media_id": a.media_id,
            "appid": a.appid,
            "page": a.page,
        },
    }


def check_template(text: str, attachments: Sequence[Mapping[str, Any]]) -> None:
    """Refuse a welcome WeCom would refuse: text over 4000 bytes or over 9 attachments."""
    if len(text.encode()) > WELCOME_TEXT_MAX_BYTES:
        raise ValidationError("欢迎语超过 4000 字节 / welcome text over 4000 bytes")
    if len(attachments) > ATTACHMENTS_MAX:
        raise ValidationError("欢迎语附件最多 9 个 / at most 9 attachments")


def needs_customer(text: str) -> bool:
    """Return whether the template uses the customer's nickname (then fetch first)."""
    return "{name}" in text


def render(text: str, *, customer_name: str, staff_name: str) -> str:
    """Fill {name} and {staff}; other braces stay as written (no str.format on user text)."""
    return text.replace("{name}", customer_name).replace("{staff}", staff_name)


def send(
    *,
    wecom: WeComClient,
    welcome_code: str,
    text: str,
    attachments: Sequence[Mapping[str, Any]],
    received_at: datetime,
) -> str:
    """Send one welcome; return its outcome (sent, already_sent, expired, ...).

    A code works once and dies 20 s after the scan, so transient failures are retried
    here, quickly, rather than through the inbox's slower backoff.
    """
    if not text and not attachments:
        OUTCOMES.labels("empty").inc()
        return "empty"
    if _age(received_at) >= WELCOME_CODE_SECONDS:
        # A backlog (or a replay) made us too late: WeCom would answer 41050. Skipping
        # the call keeps the quota and the time for welcomes that can still make it.
        OUTCOMES.labels("expired").inc()
        return "expired"
    # WeCom starts the 20 s when it sends the callback; our arrival time is the best proxy.
    deadline = time.monotonic() + WELCOME_CODE_SECONDS - 1.0 - _age(received_at)
    delay = 0.1
    while True:
        try:
            wecom.send_welcome_msg(
                welcome_code=welcome_code, text=text, attachments=list(attachments)
            )
        except WeComError as exc:
            if exc.errcode == ALREADY_SENT:
                OUTCOMES.labels("already_sent").inc()
                return "already_sent"
            transient = exc.retryable or exc.errcode == OTHER_APP_SENDING
            if transient and time.monotonic() + delay < deadline:
                time.sleep(delay)  # a worker thread, never a request
                delay = min(delay * 2, 2.0)
                continue
            if exc.errcode == NO_RELATION:  # not a fault of ours: nobody left to welcome
                OUTCOMES.labels("customer_gone").inc()
                log.info("welcome not sent (customer_gone): %s", exc)
                return "customer_gone"
            outcome = "expired" if exc.errcode == 41050 else "failed"
            OUTCOMES.labels(outcome).inc()
            log.info("welcome not sent (%s): %s", outcome, exc)  # the miss is logged by the caller
            return outcome
        LATENCY.observe(_age(received_at))
        OUTCOMES.labels("sent").inc()
        return "sent"


# --- welcomes missed ------------------------------------------------------------------


@dataclass(frozen=True)
class MissedWelcomes:
    """Welcomes this process could not send since it started, and the last one missed."""

    count: int = 0
    last_at: datetime | None = None
    last_reason: str = ""


class MissedTally:
    """The welcomes one process missed (a Runtime part): what /healthz and the console show."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = MissedWelcomes()

    def add(self, reason: str) -> None:
        with self._lock:
            self.value = MissedWelcomes(self.value.count + 1, utcnow(), reason)


def record_missed(
    ev: CallbackEvent, outcome: str, received_at: datetime, *, missed: MissedTally
) -> None:
    """Count and log a welcome that will never be sent: a miss is never silent."""
    MISSED.labels(outcome).inc()
    missed.add(outcome)
    log.warning(
        "welcome missed (%s) for %s of %s, %.1f s after the scan",
        outcome,
        ev.external_userid,
        ev.userid,
        _age(received_at),
    )


# --- the welcome for one add event -----------------------------------------------------


@dataclass(frozen=True)
class ChannelContext:
    """What the add handler needs from a channel, read once before any WeCom call."""

    id: int
    name: str
    welcome_text: str
    attachments: tuple[dict[str, Any], ...]
    tags: tuple[TagPath, ...]
    # (our tag id, WeCom tag id) per channel tag; None while one has no WeCom id
    tag_ids: tuple[tuple[int, str], ...] | None
    daily_cap: int | None


# Channels change rarely and every scan needs one: a short-lived cache saves the
# queries on the hot path; an edit shows up within CONTEXT_TTL seconds.
CONTEXT_TTL = 2.0
_CACHE_MAX = 10_000


class ContextCache:
    """Channel contexts by state and staff names by userid, each kept CONTEXT_TTL seconds.

    One per process (a Runtime part); request, lane and inbox threads share it.
    """

    def __init__(self) -> None:
        self.clock: Callable[[], float] = time.monotonic  # tests stop it to keep entries
        self._lock = threading.Lock()
        self._contexts: dict[str, tuple[float, ChannelContext | None]] = {}
        self._staff_names: dict[str, tuple[float, str]] = {}

    def context(self, state: str, now: float) -> tuple[bool, ChannelContext | None]:
        """Return (hit, context) for a state."""
        with self._lock:
            hit = self._contexts.get(state)
        if hit is not None and now - hit[0] < CONTEXT_TTL:
            return True, hit[1]
        return False, None

    def put_context(self, state: str, now: float, ctx: ChannelContext | None) -> None:
        with self._lock:
            if len(self._contexts) > _CACHE_MAX:
                self._contexts.clear()
            self._contexts[state] = (now, ctx)

    def staff_name(self, userid: str, now: float) -> str | None:
        """Return a cached display name, or None when it is absent or stale."""
        with self._lock:
            hit = self._staff_names.get(userid)
        if hit is not None and now - hit[0] < CONTEXT_TTL:
            return hit[1]
        return None

    def put_staff_name(self, userid: str, now: float, name: str) -> None:
        with self._lock:
            if len(self._staff_names) > _CACHE_MAX:
                self._staff_names.clear()
            self._staff_names[userid] = (now, name)


def _load_context(state: str, *, session: Session) -> ChannelContext | None:
    channel = get_by_state(state, session=session)
    if channel is None:
        return None
    paths = tuple(TagPath(t.group_name, t.tag_name) for t in channel.tags)
    found = [catalogue.find(session, p) for p in paths]
    return ChannelContext(
        id=channel.id,
        name=channel.name,
        welcome_text=channel.welcome_text,
        attachments=tuple(channel.welcome_attachments or ()),
        tags=paths,
        tag_ids=None
        if any(t is None or not t.wecom_tag_id for t in found)
        else tuple((t.id, t.wecom_tag_id or "") for t in found if t),
        daily_cap=channel.daily_cap,
    )


def channel_context(state: str, *, db: Database, cache: ContextCache) -> ChannelContext | None:
    """Return the channel a state belongs to, from a cache refreshed every few seconds."""
    if not state:
        return None
    now = cache.clock()
    hit, ctx = cache.context(state, now)
    if hit:
        return ctx
    with db.read() as session:
        ctx = _load_context(state, session=session)
    cache.put_context(state, now, ctx)
    return ctx


def _staff_name(userid: str, *, session: Session) -> str:
    name = session.scalars(select(Staff.name).where(Staff.userid == userid)).first()
    return name or userid


def staff_name(userid: str, *, db: Database, settings: Settings, cache: ContextCache) -> str:
    """Return `{staff}`: the configured display name, else WeCom's name, else the userid."""
    configured = settings.staff_display_name(userid)
    if configured:
        return configured
    now = cache.clock()
    name = cache.staff_name(userid, now)
    if name is not None:
        return name
    with db.read() as session:
        name = _staff_name(userid, session=session)
    cache.put_staff_name(userid, now, name)
    return name

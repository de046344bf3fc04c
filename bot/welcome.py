"""Welcome messages (欢迎语): render a channel's template and send it with the WelcomeCode.

See https://developer.work.weixin.qq.com/document/path/92599 (send_welcome_msg).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Histogram

from bot.config import AttachmentSettings
from bot.db.types import utcnow
from bot.errors import ValidationError, WeComError
from bot.wecom.client import WeComClient

log = logging.getLogger(__name__)

ALREADY_SENT = 41051  # the customer already got a welcome or a chat started: done
OTHER_APP_SENDING = 41096  # another app holds the code for now; may retry within 20 s
NO_RELATION = 84061  # the customer deleted the member before the welcome went out
CODE_LIFETIME = 20.0
TEXT_MAX_BYTES = 4000
ATTACHMENTS_MAX = 9

OUTCOMES = Counter("tagbot_welcome_total", "Welcome messages by outcome", ["outcome"])
LATENCY = Histogram(
    "tagbot_welcome_latency_seconds",
    "Time from a callback's arrival to its welcome message being accepted by WeCom",
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2, 5, 10, 20),
)


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
    if len(text.encode()) > TEXT_MAX_BYTES:
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
    wecom: WeComClient,
    *,
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
    if _age(received_at) >= CODE_LIFETIME:
        # A backlog (or a replay) made us too late: WeCom would answer 41050. Skipping
        # the call keeps the quota and the time for welcomes that can still make it.
        OUTCOMES.labels("expired").inc()
        return "expired"
    # WeCom starts the 20 s when it sends the callback; our arrival time is the best proxy.
    deadline = time.monotonic() + CODE_LIFETIME - 1.0 - _age(received_at)
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
            log.warning("welcome not sent (%s): %s", outcome, exc)
            return outcome
        LATENCY.observe(_age(received_at))
        OUTCOMES.labels("sent").inc()
        return "sent"

"""The WeCom callback URL: verify, decrypt, store durably, acknowledge, wake the worker."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue

from bot.callbacks import inbox
from bot.db.types import utcnow
from bot.errors import CallbackError
from bot.runtime import Runtime
from bot.wecom.events import CallbackEvent, parse_event
from handlers import callback_guard
from handlers.context import runtime

log = logging.getLogger(__name__)
bp = Blueprint("callback", __name__)


def _query(name: str) -> str:
    value = request.args.get(name, "")
    if not value:
        raise CallbackError(f"query parameter {name} is missing", status=400)
    return value


def _read_body(limit: int) -> bytes:
    """Read the body, refusing more than `limit` bytes without reading it all."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise CallbackError(f"callback body over {limit} bytes", status=413)
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        raise CallbackError(f"callback body over {limit} bytes", status=413)
    if not body:
        raise CallbackError("callback body is empty", status=400)
    return body


@bp.get("/wecom/callback")
def verify_url() -> ResponseReturnValue:
    """Answer WeCom's URL verification with the decrypted echostr as bare text (doc 90238)."""
    try:
        timestamp = _query("timestamp")
        plain = runtime().callback_crypto.verify_url(
            _query("msg_signature"), timestamp, _query("nonce"), _query("echostr")
        )
        # Signed with the token: checked after the signature, so a forgery stays a 401.
        callback_guard.check_timestamp(timestamp, runtime().settings.wecom)
    except CallbackError as exc:
        callback_guard.refused(exc)
        raise
    return Response(plain, mimetype="text/plain")


@bp.post("/wecom/callback")
def receive_event() -> ResponseReturnValue:
    """Store a verified event and answer 200 with an empty body; the worker does the rest.

    A well-formed POST is answered before Flask (handlers/callback_wsgi.py); this view
    answers the rest, refusing bad input with its 4xx.
    """
    rt = runtime()
    try:
        body = _read_body(rt.settings.server.max_callback_bytes)
        timestamp = _query("timestamp")
        event, xml = verified_event(rt, _query("msg_signature"), timestamp, _query("nonce"), body)
    except CallbackError as exc:
        callback_guard.refused(exc)
        raise
    accept(rt, event, xml)
    return Response(b"", status=200, mimetype="text/plain")


def verified_event(
    rt: Runtime, signature: str, timestamp: str, nonce: str, body: bytes
) -> tuple[CallbackEvent, str]:
    """Decrypt and check a callback; return its event and XML, or raise CallbackError."""
    xml = rt.callback_crypto.decrypt(signature, timestamp, nonce, body)
    callback_guard.check_timestamp(timestamp, rt.settings.wecom)
    return parse_event(xml), xml


def accept(rt: Runtime, event: CallbackEvent, xml: str) -> None:
    """Store a verified event durably, then wake whoever processes it (before the 200)."""
    handoff = rt.handoff
    hand_off = handoff.active  # this process runs inbox workers: it processes what it acks
    # urgent: WeCom waits on this one; it goes ahead of queued background writes.
    with rt.db.write_driver(urgent=True) as txn:
        # Also claimed for our workers here: no claim write later.
        owner = rt.heartbeat.id if hand_off else None
        entry = inbox.store(event, xml, txn=txn, owner=owner, take=hand_off)
    if entry is not None:
        if hand_off:
            handoff.put(entry)
        if event.welcome_code:
            rt.welcome_lane.offer(event, utcnow())
        rt.wakeups.inbox.set()
    else:
        log.info("callback re-delivered: %s", event.dedup_key)

"""The welcome for one add event, sent once per process by whoever takes its code first.

Two threads may hold the same fresh add event: a welcome-lane thread (the request offered
it, bot.channels.welcome_lane) and the inbox worker processing the stored event. Both go
through `send_once`: take the code, send, then give the code back after a failure (so a
retry of the event tries again) or record the customer fetched for it (so the other
thread reuses it instead of fetching twice).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from bot.channels.welcome import (
    MISSED_OUTCOMES,
    ContextCache,
    MissedTally,
    channel_context,
    needs_customer,
    record_missed,
    render,
    send,
    staff_name,
)
from bot.channels.welcome_lane import Offer, WelcomeLane
from bot.config import Settings
from bot.customers.customer_fetch import fetch_contact
from bot.db import Database
from bot.errors import WeComError
from bot.wecom import budget as wecom_calls
from bot.wecom.client import WeComClient
from bot.wecom.events import CallbackEvent
from bot.wecom.types import ExternalContact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Taken:
    """This thread took the code and ran the welcome; `contact` if it fetched the customer."""

    contact: ExternalContact | None


def send_welcome(
    ev: CallbackEvent,
    received_at: datetime,
    *,
    db: Database,
    wecom: WeComClient,
    settings: Settings,
    cache: ContextCache,
    missed: MissedTally,
) -> ExternalContact | None:
    """Send the channel's welcome for an add event; return the customer if it was fetched."""
    ctx = channel_context(ev.state, db=db, cache=cache)
    if not ev.welcome_code or ctx is None or not (ctx.welcome_text or ctx.attachments):
        return None
    contact: ExternalContact | None = None
    member = (
        staff_name(ev.userid, db=db, settings=settings, cache=cache)
        if "{staff}" in ctx.welcome_text
        else ev.userid
    )
    if needs_customer(ctx.welcome_text):
        contact = fetch_contact(ev, wecom=wecom)
        if contact is None:
            return None  # nobody to welcome
    text = render(
        ctx.welcome_text,
        customer_name=contact.name if contact is not None else "",
        staff_name=member,
    )
    outcome = send(
        wecom=wecom,
        welcome_code=ev.welcome_code,
        text=text,
        attachments=ctx.attachments,
        received_at=received_at,
    )
    if outcome in MISSED_OUTCOMES:
        record_missed(ev, outcome, received_at, missed=missed)
    return contact


def send_once(
    ev: CallbackEvent,
    received_at: datetime,
    *,
    db: Database,
    wecom: WeComClient,
    settings: Settings,
    lane: WelcomeLane,
    cache: ContextCache,
    missed: MissedTally,
) -> Taken | None:
    """Take the event's welcome code and send; None when another thread here holds it.

    Any failure (a WeComError, a database connection lost while reading the channel)
    gives the code back before it propagates: else the event's retry finds the code taken,
    takes it for the lane's, and ends done with no welcome sent. If WeCom did get the
    message, the retry's 41051 ends it without a second one.
    """
    if not lane.take_code(ev.welcome_code):
        return None
    try:
        contact = send_welcome(
            ev, received_at, db=db, wecom=wecom, settings=settings, cache=cache, missed=missed
        )
    except Exception:
        lane.release(ev.welcome_code)
        raise
    lane.finish(ev.welcome_code, contact)
    return Taken(contact)


def send_offered(
    offer: Offer,
    *,
    db: Database,
    wecom: WeComClient,
    settings: Settings,
    lane: WelcomeLane,
    cache: ContextCache,
    missed: MissedTally,
) -> bool:
    """Send the welcome for one lane offer; return True when this call handled the code."""
    ev = offer.event
    try:
        with wecom_calls.interactive():  # a customer is waiting: the reserved share may be used
            taken = send_once(
                ev,
                offer.received_at,
                db=db,
                wecom=wecom,
                settings=settings,
                lane=lane,
                cache=cache,
                missed=missed,
            )
    except WeComError as exc:
        log.info("welcome lane: %s left to the inbox worker: %s", ev.external_userid, exc)
        return True
    return taken is not None

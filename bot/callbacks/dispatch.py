"""Process stored callbacks: one reaction per 客户联系 change type (doc 92130, 92277).

The reactions live with their domain: bot.customers.contact_events (a customer and a
member), bot.tags.tag_events (the corp tag catalogue), bot.groups.events (a customer
group). Each ends in the write recording
its effect and marks the stored event done there, through the `finish` given here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from bot.callbacks import inbox
from bot.channels.welcome import ContextCache, MissedTally
from bot.channels.welcome_lane import WelcomeLane
from bot.config import Settings
from bot.customers import contact_events
from bot.db import Database
from bot.errors import CallbackError, WeComError
from bot.groups import events as group_events
from bot.groups.changes import CHAT_EVENT
from bot.tags import tag_events
from bot.tags.tag_events import EXTERNAL_TAG
from bot.wecom import budget as wecom_calls
from bot.wecom.client import WeComClient
from bot.wecom.events import CallbackEvent, parse_event

log = logging.getLogger(__name__)

EXTERNAL_CONTACT = "change_external_contact"


@dataclass(frozen=True)
class Parts:
    """What the reactions use, gathered from the process_next arguments once per claim."""

    db: Database
    wecom: WeComClient
    settings: Settings
    lane: WelcomeLane
    cache: ContextCache
    missed: MissedTally
    outbox_wakeup: threading.Event
    alerts_wakeup: threading.Event


Handler = Callable[[CallbackEvent, inbox.Claimed, Parts], None]


def _finisher(item: inbox.Claimed) -> Callable[[Session], None]:
    return lambda session: inbox.finish(item, session=session)


def _add(ev: CallbackEvent, item: inbox.Claimed, p: Parts) -> None:
    contact_events.on_add(
        ev,
        received_at=item.received_at,
        finish=_finisher(item),
        finish_sql=lambda txn: inbox.finish_sql(item, txn=txn),
        db=p.db,
        wecom=p.wecom,
        settings=p.settings,
        lane=p.lane,
        cache=p.cache,
        missed=p.missed,
        outbox_wakeup=p.outbox_wakeup,
    )


def _edit(ev: CallbackEvent, item: inbox.Claimed, p: Parts) -> None:
    contact_events.on_edit(ev, finish=_finisher(item), db=p.db, wecom=p.wecom)


def _customer_deleted_staff(ev: CallbackEvent, item: inbox.Claimed, p: Parts) -> None:
    contact_events.on_customer_deleted_staff(
        ev, finish=_finisher(item), db=p.db, settings=p.settings, alerts_wakeup=p.alerts_wakeup
    )


def _staff_deleted_customer(ev: CallbackEvent, item: inbox.Claimed, p: Parts) -> None:
    contact_events.on_staff_deleted_customer(ev, finish=_finisher(item), db=p.db)


def _transfer_fail(ev: CallbackEvent, item: inbox.Claimed, p: Parts) -> None:
    contact_events.on_transfer_fail(ev, finish=_finisher(item), db=p.db)


def _tag_change(_ev: CallbackEvent, item: inbox.Claimed, p: Parts) -> None:
    def finish(session: Session, received_by: datetime) -> None:
        inbox.finish(item, session=session)
        inbox.finish_pending(
            session=session, event=EXTERNAL_TAG, received_by=received_by, but=item.id
        )

    tag_events.on_tag_change(finish=finish, db=p.db, wecom=p.wecom)


def _chat_change(ev: CallbackEvent, item: inbox.Claimed, p: Parts) -> None:
    group_events.on_chat_change(
        ev, finish=_finisher(item), db=p.db, wecom=p.wecom, outbox_wakeup=p.outbox_wakeup
    )


HANDLERS: dict[tuple[str, str], Handler] = {
    (EXTERNAL_CONTACT, "add_external_contact"): _add,
    (EXTERNAL_CONTACT, "add_half_external_contact"): _add,
    (EXTERNAL_CONTACT, "edit_external_contact"): _edit,
    (EXTERNAL_CONTACT, "del_follow_user"): _customer_deleted_staff,
    (EXTERNAL_CONTACT, "del_external_contact"): _staff_deleted_customer,
    (EXTERNAL_CONTACT, "transfer_fail"): _transfer_fail,
    (EXTERNAL_TAG, "create"): _tag_change,
    (EXTERNAL_TAG, "update"): _tag_change,
    (EXTERNAL_TAG, "delete"): _tag_change,
    (EXTERNAL_TAG, "shuffle"): _tag_change,
    (CHAT_EVENT, "create"): _chat_change,
    (CHAT_EVENT, "update"): _chat_change,
    (CHAT_EVENT, "dismiss"): _chat_change,
}


def process(item: inbox.Claimed, parts: Parts) -> None:
    """Run the handler for one claimed event and record the outcome; never raises."""
    try:
        ev = parse_event(item.payload)
        handler = HANDLERS.get((ev.event, ev.change_type))
        if handler is None:
            with parts.db.write() as session:
                inbox.finish(item, session=session, handled=False)
            return
        with wecom_calls.interactive():  # a callback is a person acting now: scans, alerts
            handler(ev, item, parts)
    except WeComError as exc:
        _failed(item, str(exc), retryable=exc.retryable, db=parts.db)
    except CallbackError as exc:  # stored payload no longer parses: retrying cannot help
        _failed(item, str(exc), retryable=False, db=parts.db)
    except Exception as exc:
        log.exception("inbox event %d failed", item.id)
        _failed(item, f"{type(exc).__name__}: {exc}", retryable=True, db=parts.db)


def _failed(item: inbox.Claimed, error: str, *, retryable: bool, db: Database) -> None:
    with db.write() as session:
        dead = inbox.fail(item, error, session=session, retryable=retryable)
    log.warning("inbox event %d %s: %s", item.id, "dead" if dead else "will retry", error)


def process_next(
    *,
    owner: str,
    db: Database,
    wecom: WeComClient,
    settings: Settings,
    lane: WelcomeLane,
    cache: ContextCache,
    missed: MissedTally,
    outbox_wakeup: threading.Event,
    alerts_wakeup: threading.Event,
    limit: int = 1,
    ids: Sequence[int] = (),
    taken: Sequence[inbox.Claimed] = (),
) -> int:
    """Claim and process due events (or these handed-off ids); return how many were taken.

    `taken`: events the ack already claimed for this process; no claim write, unless
    they waited long enough in the hand-off for the claim to need renewing.
    """
    if taken:
        items = list(taken)
        if inbox.aged(items):
            with db.write() as session:
                items = inbox.retake(items, session=session, owner=owner)
    else:
        with db.write() as session:
            items = inbox.claim(session=session, owner=owner, limit=limit, ids=ids)
    parts = Parts(db, wecom, settings, lane, cache, missed, outbox_wakeup, alerts_wakeup)
    for item in items:
        process(item, parts)
    return len(items)

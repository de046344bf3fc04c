"""Process stored callbacks: one handler per 客户联系 change type (doc 92130, 92277).

The handlers live beside this module, by event kind: contact_events (a customer and a
member), tag_events (the corp tag catalogue).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from bot import wecom
from bot.callbacks import inbox
from bot.callbacks.contact_events import (
    on_add,
    on_customer_deleted_staff,
    on_edit,
    on_staff_deleted_customer,
    on_transfer_fail,
)
from bot.callbacks.tag_events import EXTERNAL_TAG, on_tag_change
from bot.errors import CallbackError, WeComError
from bot.runtime import Runtime
from bot.wecom.events import CallbackEvent, parse_event

log = logging.getLogger(__name__)

EXTERNAL_CONTACT = "change_external_contact"

Handler = Callable[[Runtime, CallbackEvent, inbox.Claimed], None]


HANDLERS: dict[tuple[str, str], Handler] = {
    (EXTERNAL_CONTACT, "add_external_contact"): on_add,
    (EXTERNAL_CONTACT, "add_half_external_contact"): on_add,
    (EXTERNAL_CONTACT, "edit_external_contact"): on_edit,
    (EXTERNAL_CONTACT, "del_follow_user"): on_customer_deleted_staff,
    (EXTERNAL_CONTACT, "del_external_contact"): on_staff_deleted_customer,
    (EXTERNAL_CONTACT, "transfer_fail"): on_transfer_fail,
    (EXTERNAL_TAG, "create"): on_tag_change,
    (EXTERNAL_TAG, "update"): on_tag_change,
    (EXTERNAL_TAG, "delete"): on_tag_change,
    (EXTERNAL_TAG, "shuffle"): on_tag_change,
}


def process(rt: Runtime, item: inbox.Claimed) -> None:
    """Run the handler for one claimed event and record the outcome; never raises."""
    try:
        ev = parse_event(item.payload)
        handler = HANDLERS.get((ev.event, ev.change_type))
        if handler is None:
            with rt.db.write() as session:
                inbox.finish(session, item, handled=False)
            return
        with wecom.interactive():  # a callback is a person acting now: scans, alerts
            handler(rt, ev, item)
    except WeComError as exc:
        _failed(rt, item, str(exc), retryable=exc.retryable)
    except CallbackError as exc:  # stored payload no longer parses: retrying cannot help
        _failed(rt, item, str(exc), retryable=False)
    except Exception as exc:
        log.exception("inbox event %d failed", item.id)
        _failed(rt, item, f"{type(exc).__name__}: {exc}", retryable=True)


def _failed(rt: Runtime, item: inbox.Claimed, error: str, *, retryable: bool) -> None:
    with rt.db.write() as session:
        dead = inbox.fail(session, item, error, retryable=retryable)
    log.warning("inbox event %d %s: %s", item.id, "dead" if dead else "will retry", error)


def process_next(rt: Runtime, *, limit: int = 1, ids: Sequence[int] = ()) -> int:
    """Claim and process due events (or these handed-off ids); return how many were taken."""
    with rt.db.write() as session:
        items = inbox.claim(session, owner=inbox.owner_for(rt), limit=limit, ids=ids)
    for item in items:
        process(rt, item)
    return len(items)

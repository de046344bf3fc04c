"""The change_external_chat callbacks (doc 92130): a group created, changed or dismissed.

Processed through the callback inbox in the order they arrived per group (the inbox keys
them by chat_id, as it keys customer events by relation). Every create and update reads
the group (groupchat/get) and applies its detail, the truth (bot.groups.stays); a member
change whose CurMemVer is the version already applied skips the call. A dismissal
closes every stay. Joins through a channel's group code get the channel's tags on their
member's relations (bot.groups.channel_tags). Each reaction ends in the write recording
its effect and marks the event done there, through the `finish` bot.callbacks.dispatch
passes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.db import Database
from bot.errors import WeComError
from bot.groups import stays
from bot.groups.changes import GROUP_GONE, ChatChange, chat_change
from bot.groups.channel_tags import apply_pending
from bot.wecom.client import WeComClient
from bot.wecom.events import CallbackEvent

log = logging.getLogger(__name__)

Finish = Callable[[Session], None]


def on_chat_change(
    ev: CallbackEvent,
    *,
    finish: Finish,
    db: Database,
    wecom: WeComClient,
    outbox_wakeup: threading.Event,
) -> None:
    """Record what changed in a customer group; tag members who joined through a channel."""
    change = chat_change(ev)
    if not change.chat_id:
        with db.write() as session:
            finish(session)
        return
    if change.change_type == "dismiss":
        with db.write() as session:
            stays.dismiss(change.chat_id, change.at, session=session)
            finish(session)
        return
    if _known(change, db=db):
        with db.write() as session:
            stays.refine_leaves(change, session=session)
            finish(session)
        return
    try:
        detail = wecom.get_group_chat(change.chat_id)
    except WeComError as exc:
        if exc.errcode not in GROUP_GONE:
            raise  # the inbox retries what may succeed later
        log.info("group %s is gone (%s): %s ignored", change.chat_id, exc.errcode, ev.dedup_key)
        with db.write() as session:
            finish(session)
        return
    applied = stays.Applied()
    for attempt in (1, 2):
        try:
            with db.write() as session:
                applied = stays.apply_detail(detail, session=session, at=change.at, change=change)
                finish(session)
            break
        except IntegrityError:  # the sync stored the same group or stay meanwhile
            if attempt == 2:
                raise
            log.info("group %s raced with the sync; applying its detail again", change.chat_id)
    if applied.due:
        tagged = apply_pending(db=db, wecom=wecom, external_userids=sorted(applied.due))
        if tagged.operations:
            outbox_wakeup.set()


def _known(change: ChatChange, *, db: Database) -> bool:
    """Tell whether there is nothing to read: the membership is applied, or the group gone."""
    with db.read() as session:
        group = stays.find_group(change.chat_id, session=session)
        if group is None:
            return False
        if group.dismissed_at is not None:
            return True  # a late event of a dismissed group: groupchat/get would answer 49008
        return bool(
            change.member_change
            and change.current_version
            and group.member_version == change.current_version
        )

"""The groups part of the daily sync: every customer group read and its stays reconciled.

Calls: externalcontact/groupchat/list by owner (100 owners a call, every page by cursor),
then groupchat/get once per group listed, and once per group stored as live that the
list no longer names (dismissed: 40050/49008 → closed; handed to an owner outside the
list: applied). https://developer.work.weixin.qq.com/document/path/92120, 92122

Each detail is applied as a callback's is (bot.groups.stays), so joins and leaves missed
while the bot was down are absorbed; a leave found this way is dated by the sync. A
group whose detail changes nothing costs a read, not a write: a second sync writes
nothing. Then the channel tags of joins still pending whose member is now somebody's
customer are queued (bot.groups.channel_tags).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.db import Database
from bot.db.models import GroupChat
from bot.db.types import utcnow
from bot.errors import WeComError
from bot.groups import stays
from bot.groups.changes import GROUP_GONE
from bot.groups.channel_tags import Tagged, apply_pending
from bot.tags import outbox
from bot.wecom.client import WeComClient
from bot.wecom.types import GroupChat as GroupDetail

log = logging.getLogger(__name__)

# Nobody waits for these (unlike a join's own tags): the bulk lane, ahead of tier pushes.
PRIORITY = outbox.INTERACTIVE - 1


@dataclass
class GroupSync:
    """What the groups part of a sync read and changed."""

    groups: int = 0  # live groups read
    applied: stays.Applied = field(default_factory=stays.Applied)
    tagged: Tagged = field(default_factory=Tagged)

    @property
    def changed(self) -> int:
        return self.applied.changed + self.tagged.stays


def sync_groups(
    *,
    db: Database,
    wecom: WeComClient,
    owners: Sequence[str],
    renew: Callable[[], None] = lambda: None,
) -> GroupSync:
    """Read every group of these owners (and every stored live one) and reconcile its stays."""
    report = GroupSync()
    listed = list(dict.fromkeys(ref.chat_id for ref in wecom.list_group_chats(owners)))
    with db.read() as session:
        live = set(
            session.scalars(select(GroupChat.chat_id).where(GroupChat.dismissed_at.is_(None)))
        )
    unlisted = sorted(live - set(listed))
    for chat_id in [*listed, *unlisted]:
        try:
            detail = wecom.get_group_chat(chat_id)
        except WeComError as exc:
            if exc.errcode not in GROUP_GONE:
                raise
            if chat_id in live:
                with db.write() as session:
                    report.applied.add(stays.dismiss(chat_id, utcnow(), session=session))
            continue
        report.groups += 1
        report.applied.add(_apply(detail, db=db))
        renew()
    report.tagged = apply_pending(db=db, wecom=wecom, priority=PRIORITY)
    return report


def _apply(detail: GroupDetail, *, db: Database) -> stays.Applied:
    """Apply one group's detail, in a write only when it changes something."""
    at = utcnow()
    with db.read() as session:
        if not stays.apply_detail(detail, session=session, at=at, dry_run=True).changed:
            return stays.Applied()
    try:
        with db.write() as session:
            return stays.apply_detail(detail, session=session, at=at)
    except IntegrityError:  # a callback stored the same group or stay meanwhile
        log.info("group %s raced with a callback; applying its detail again", detail.chat_id)
        with db.write() as session:
            return stays.apply_detail(detail, session=session, at=at)

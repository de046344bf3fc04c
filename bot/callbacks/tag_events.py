"""The tag events (doc 92277): a corp tag or group was created, changed or deleted in WeCom."""

from __future__ import annotations

from bot.callbacks import inbox
from bot.db.types import utcnow
from bot.runtime import Runtime
from bot.tags import catalogue
from bot.wecom.events import CallbackEvent

EXTERNAL_TAG = "change_external_tag"


def on_tag_change(rt: Runtime, ev: CallbackEvent, item: inbox.Claimed) -> None:
    """Tags or groups changed in WeCom: refresh the whole catalogue once for the burst."""
    started = utcnow()
    groups = rt.wecom.get_corp_tag_list()
    with rt.db.write() as session:
        catalogue.apply_groups(session, groups, complete=True)
        inbox.finish(session, item)
        # Tag events that arrived before this read are answered by it too.
        inbox.finish_pending(session, event=EXTERNAL_TAG, received_by=started, but=item.id)

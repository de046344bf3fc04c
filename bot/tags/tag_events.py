"""The tag events (doc 92277): a corp tag or group was created, changed or deleted in WeCom."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from bot.db import Database
from bot.db.types import utcnow
from bot.tags import catalogue
from bot.wecom.client import WeComClient

EXTERNAL_TAG = "change_external_tag"

# Marks the stored event done, with the tag events received by the given time: one
# refresh answers them all (bot.callbacks.dispatch passes it).
FinishReceivedBy = Callable[[Session, datetime], None]


def on_tag_change(*, finish: FinishReceivedBy, db: Database, wecom: WeComClient) -> None:
    """Tags or groups changed in WeCom: refresh the whole catalogue once for the burst."""
    started = utcnow()
    groups = wecom.get_corp_tag_list()
    with db.write() as session:
        catalogue.apply_groups(session, groups, complete=True)
        # Tag events that arrived before this read are answered by it too.
        finish(session, started)

"""Fetch the customer an event names, tolerating one who already left every member."""

from __future__ import annotations

import logging

from bot.errors import WeComError
from bot.wecom.client import WeComClient
from bot.wecom.events import CallbackEvent
from bot.wecom.types import ExternalContact

log = logging.getLogger(__name__)

NO_RELATION = 84061  # WeCom: the customer is no longer anyone's friend here


def fetch_contact(ev: CallbackEvent, *, wecom: WeComClient) -> ExternalContact | None:
    """Return the customer, or None when they deleted every member before we asked."""
    try:
        return wecom.get_external_contact(ev.external_userid)
    except WeComError as exc:
        if exc.errcode != NO_RELATION:
            raise
        log.info("%s %s: customer already gone (%s)", ev.change_type, ev.external_userid, exc)
        return None

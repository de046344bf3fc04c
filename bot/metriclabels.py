"""Closed sets of Prometheus label values: input never mints a new time series.

A label value taken from a callback or a WeCom answer is kept only when it is one we
know (or, for WeCom errcodes, one of the first few distinct ones); anything else is
`other`, so a fuzzed or buggy peer cannot grow /metrics without bound.
"""

from __future__ import annotations

import threading

OTHER = "other"

# Event and ChangeType values WeCom documents for 客户联系 callbacks (doc 92130, 92277).
CALLBACK_EVENTS = frozenset(
    {"change_external_contact", "change_external_tag", "change_external_chat"}
)
CHANGE_TYPES = frozenset(
    {
        "add_external_contact",
        "edit_external_contact",
        "add_half_external_contact",
        "del_external_contact",
        "del_follow_user",
        "transfer_fail",
        "create",
        "update",
        "delete",
        "shuffle",
        "dismiss",
    }
)


def change_type_label(change_type: str, event: str) -> str:
    """Return the label for an inbox event: its known ChangeType, else its known Event."""
    if change_type:
        return change_type if change_type in CHANGE_TYPES else OTHER
    return event if event in CALLBACK_EVENTS else OTHER


class FirstSeen:
    """Keep `always` and the first `limit` other distinct values; call the rest `other`."""

    def __init__(self, limit: int, always: frozenset[str] = frozenset()) -> None:
        self._limit = limit
        self._always = always
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._always or value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return OTHER

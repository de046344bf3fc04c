"""Channel upkeep: reconcile `[[channels]]` from config at start, lift daily caps each day."""

from __future__ import annotations

import logging
import threading
import uuid
import weakref

from bot import leases
from bot.channels import declared, rotation
from bot.runtime import Runtime
from jobs.specs import WorkerSpec

log = logging.getLogger("tagbot.jobs")

RECONCILE_LEASE = "channels-reconcile"
_events: weakref.WeakKeyDictionary[Runtime, threading.Event] = weakref.WeakKeyDictionary()
_reconciled: weakref.WeakSet[Runtime] = weakref.WeakSet()


def _wakeup(rt: Runtime) -> threading.Event:
    return _events.setdefault(rt, threading.Event())


def reconcile_once(rt: Runtime) -> dict[str, str]:
    """Reconcile configured channels unless another process is doing it right now."""
    if not rt.settings.channels:
        return {}
    owner = f"reconcile-{uuid.uuid4().hex[:8]}"
    with leases.holding(rt.db, RECONCILE_LEASE, owner, 300.0) as held:
        if not held:
            return {}
        results = declared.reconcile_config_channels(
            rt.settings.channels, db=rt.db, wecom=rt.wecom, tz=rt.settings.tz
        )
    for name, action in results.items():
        log.info("configured channel %s: %s", name, action)
    return results


def _step(rt: Runtime) -> int:
    if rt not in _reconciled:
        results = reconcile_once(rt)
        # WeCom unreachable at start: try again at the next look instead of giving up.
        if not any(action.startswith("failed") for action in results.values()):
            _reconciled.add(rt)
    with rt.db.read() as session:
        due = rotation.channels_needing_rotation(session=session, tz=rt.settings.tz)
    for channel_id in due:
        rotation.rotate(channel_id, db=rt.db, wecom=rt.wecom, tz=rt.settings.tz)
    return 0  # nothing queues up here: sleep until the next look


CHANNEL_UPKEEP = WorkerSpec(
    name="channels",
    step=_step,
    wakeup=_wakeup,
    threads=lambda _s: 1,
    idle_seconds=60.0,
)

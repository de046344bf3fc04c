"""A fast lane for welcome messages: fresh add events get their welcome ahead of the backlog.

The inbox is processed in arrival order, which keeps the events of one relation in
order. Under a burst every event waits behind the backlog, and a welcome code dies 20 s
after the scan. So the callback request also hands each fresh add event to this lane;
its threads send the welcome newest-first (the oldest are the likeliest to be lost
anyway), and the inbox worker skips the welcome when the lane already sent it. The lane
is an in-process accelerator only: the stored event remains the source of truth.

What a lane thread sends, and how it and the inbox worker share a code, is
bot.customers.scan_welcome.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime

from bot.wakeone import WakeOne
from bot.wecom.events import CallbackEvent
from bot.wecom.types import ExternalContact

MAX_WAITING = 20_000
_REMEMBER = 50_000
# Past this age a welcome is unlikely to make its 20 s; leave it to the inbox worker.
MAX_AGE = 15.0


@dataclass(frozen=True)
class Offer:
    """A fresh add event with a welcome code, as the request saw it."""

    event: CallbackEvent
    received_at: datetime
    offered: float  # time.monotonic() when it arrived


@dataclass
class _Slot:
    """One welcome code someone in this process is handling."""

    done: threading.Event
    contact: ExternalContact | None = None


class WelcomeLane:
    """Newest-first queue of pending welcomes, and the codes already taken care of.

    One per process (a Runtime part): the request offers, lane threads take.
    """

    def __init__(self) -> None:
        self._waiting: deque[Offer] = deque(maxlen=MAX_WAITING)
        self._lock = threading.Lock()
        self._taken: OrderedDict[str, _Slot] = OrderedDict()
        self.wakeup = WakeOne()  # one lane thread per offer, not all of them
        self.empty = threading.Event()  # set while nothing waits: inbox workers may go on
        self.empty.set()
        self.active = False  # set while this process runs lane threads

    def offer(self, event: CallbackEvent, received_at: datetime) -> None:
        """Queue a fresh add event's welcome (no-op when no lane thread runs here)."""
        if not self.active or not event.welcome_code:
            return
        with self._lock:
            self._waiting.append(Offer(event, received_at, time.monotonic()))
            self.empty.clear()
        self.wakeup.set()

    def take(self) -> Offer | None:
        """Return the newest waiting welcome still young enough, dropping stale ones."""
        with self._lock:
            offer = self._waiting.pop() if self._waiting else None
            if offer is not None and time.monotonic() - offer.offered > MAX_AGE:
                self._waiting.clear()  # everything older is staler still
                offer = None
            if not self._waiting:
                self.empty.set()
            return offer

    def waiting(self) -> int:
        """Return how many welcomes wait in the lane."""
        with self._lock:
            return len(self._waiting)

    def take_code(self, code: str) -> bool:
        """Claim a welcome code for sending; False when someone here already did."""
        with self._lock:
            if code in self._taken:
                return False
            self._taken[code] = _Slot(threading.Event())
            while len(self._taken) > _REMEMBER:
                self._taken.popitem(last=False)
            return True

    def release(self, code: str) -> None:
        """Give a code back after a failed attempt, so the inbox worker tries it."""
        with self._lock:
            slot = self._taken.pop(code, None)
        if slot is not None:
            slot.done.set()

    def finish(self, code: str, contact: ExternalContact | None) -> None:
        """Record that the welcome went out, with the customer if it was fetched for it."""
        with self._lock:
            slot = self._taken.get(code)
        if slot is not None:
            slot.contact = contact
            slot.done.set()

    def contact_for(self, code: str, *, wait: float = 0.0) -> ExternalContact | None:
        """Return the customer fetched for this code, waiting for an attempt in flight."""
        with self._lock:
            slot = self._taken.get(code)
        if slot is None:
            return None
        slot.done.wait(wait)
        return slot.contact

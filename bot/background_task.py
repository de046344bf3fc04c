"""One computation at a time in a daemon thread, its outcome taken by the next caller.

A serving process computes a few expensive things off the request path (the rule trial's
frame of every customer, the explanations' rank population): a request starts the work
and answers at once, a later request takes the outcome (a result, or the failure's error
once) and installs it. `close()` cancels the work (its registered interrupt, e.g. DuckDB's
`con.interrupt()`) and waits for the thread a bounded time, so shutdown never hangs; a
result finished after close, or never taken, is handed to `dispose`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

CLOSE_WAIT_S = 30.0  # how long close() waits for a cancelled thread


class Cancel:
    """What the work registers to be interrupted by `BackgroundTask.close()`."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._interrupts: list[Callable[[], None]] = []
        self.cancelled = False

    def on_cancel(self, interrupt: Callable[[], None]) -> None:
        """Call `interrupt` on close (at once when already closed)."""
        with self._lock:
            if not self.cancelled:
                self._interrupts.append(interrupt)
                return
        interrupt()

    def _cancel(self) -> list[Callable[[], None]]:
        """Mark cancelled and return the interrupts to call (the caller holds the lock)."""
        self.cancelled = True
        out, self._interrupts = self._interrupts, []
        return out


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """A finished computation: its result, or the failure's error (the type's name)."""

    result: T | None = None
    error: str | None = None


class BackgroundTask(Generic[T]):
    """Run `work(cancel)` in a thread, one at a time; `take()` its outcome (thread-safe)."""

    def __init__(
        self,
        name: str,
        *,
        dispose: Callable[[T], None] = lambda _r: None,
        close_wait: float = CLOSE_WAIT_S,
    ) -> None:
        self.name = name
        self._dispose = dispose
        self._close_wait = close_wait
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._cancel: Cancel | None = None
        self._outcome: Outcome[T] | None = None
        self._key: Hashable | None = None
        self._closed = False
        self.started = 0  # computations begun (tests count)
        self.failures = 0

    def start(self, work: Callable[[Cancel], T], *, key: Hashable | None = None) -> bool:
        """Start `work` unless one runs, an outcome waits to be taken, or `key` was begun.

        Say whether it started. With `key`, work for one key starts once (a day's build).
        """
        with self._lock:
            if self._closed or self._thread is not None or self._outcome is not None:
                return False
            if key is not None and key == self._key:
                return False
            self._key = key
            cancel = self._cancel = Cancel(self._lock)
            thread = self._thread = threading.Thread(
                target=self._run, args=(work, cancel), name=self.name, daemon=True
            )
            self.started += 1
        thread.start()
        return True

    def _run(self, work: Callable[[Cancel], T], cancel: Cancel) -> None:
        try:
            result = work(cancel)
        except Exception as exc:
            if not cancel.cancelled:  # closing interrupts the work: no failure to report
                log.exception("%s: background computation failed", self.name)
            with self._lock:
                self.failures += 1
                if not self._closed:
                    self._outcome = Outcome(error=type(exc).__name__)
                self._thread = self._cancel = None
            return
        with self._lock:
            keep = not self._closed
            if keep:
                self._outcome = Outcome(result=result)
            self._thread = self._cancel = None
        if not keep:
            self._dispose(result)

    @property
    def running(self) -> bool:
        """Whether a computation is in progress."""
        return self._thread is not None

    def take(self) -> Outcome[T] | None:
        """Return the finished computation's outcome once (None: none finished since)."""
        with self._lock:
            outcome, self._outcome = self._outcome, None
            return outcome

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the computation in progress, if any; say whether none is running."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def close(self) -> bool:
        """Cancel the computation, wait for it at most `close_wait` s; say whether it ended.

        An outcome not taken is disposed of; so is a result finished after this.
        """
        with self._lock:
            self._closed = True
            interrupts = self._cancel._cancel() if self._cancel is not None else []
            outcome, self._outcome = self._outcome, None
        for interrupt in interrupts:
            try:
                interrupt()
            except Exception:
                log.exception("%s: interrupting the background computation failed", self.name)
        if outcome is not None and outcome.result is not None:
            self._dispose(outcome.result)
        return self.wait(self._close_wait)  # bounded: shutdown never hangs on a slow interrupt

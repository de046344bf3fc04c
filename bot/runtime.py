"""The long-lived parts one process shares: settings, database, WeCom client, wake-ups.

Built once per process by the app factory (handlers.app.create_app) and the commands
running jobs; the per-process parts are built here, eagerly, and handed by the callers
(handlers, jobs) to the bot functions that use them.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from bot.callbacks.inbox import Handoff
from bot.channels.welcome import ContextCache, MissedTally
from bot.channels.welcome_lane import WelcomeLane
from bot.config import Settings
from bot.db import Database
from bot.heartbeat import Heartbeat
from bot.metrics import Refreshers
from bot.tiering.touched_state import TouchedState
from bot.tiering.why import ExplainEngine
from bot.wakeone import WakeOne
from bot.wecom.crypto import CallbackCrypto

if TYPE_CHECKING:
    from bot.wecom.client import WeComClient

T = TypeVar("T")


@dataclass
class Wakeups:
    """Events that let a request wake a background worker at once instead of polling."""

    # One inbox thread per ack, not all four: the others found the hand-off taken, an
    # empty step each (its metrics, locks and GIL hand-offs) on every scan.
    inbox: WakeOne = field(default_factory=WakeOne)
    outbox: threading.Event = field(default_factory=threading.Event)
    alerts: threading.Event = field(default_factory=threading.Event)
    outreach: threading.Event = field(default_factory=threading.Event)


class Runtime:
    """Bind settings to the resources built from them, once per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.database.url, echo=settings.database.echo)
        self.wakeups = Wakeups()
        self.stopping = threading.Event()
        # This process's identity to the others (inbox ownership, the alert sender's lease).
        self.heartbeat = Heartbeat()
        # Events this process acknowledged and processes itself.
        self.handoff = Handoff()
        # Fresh welcomes, sent ahead of the inbox backlog, and the codes taken.
        self.welcome_lane = WelcomeLane()
        # Channel contexts and staff names a scan reads, kept a few seconds.
        self.context_cache = ContextCache()
        # Welcomes never sent since the process started (/healthz, the console).
        self.missed_welcomes = MissedTally()
        # What updates the gauges read from the database before each /metrics scrape.
        self.refreshers = Refreshers()
        w = settings.wecom
        self.callback_crypto = CallbackCrypto(
            w.token.get_secret_value(), w.encoding_aes_key.get_secret_value(), w.corp_id
        )
        # Per-process parts the request and worker threads share, built here once:
        # The rank basis: stored once a day by the day-population job; built here (once a
        # day, in the background) only when that job is off or its day's is missing late.
        self.explain = ExplainEngine(schedule=settings.tiering.population_schedule or None)
        self.touched = TouchedState()  # the touched re-tier's engine, kept between batches
        self._locals: dict[type[Any], Any] = {}
        self._locals_lock = threading.Lock()

    def local(self, cls: type[T]) -> T:
        """Return this process's one instance of `cls` (built with no arguments on first use).

        For in-memory state not yet a field above (the re-tier's engines and wake-ups).
        """
        with self._locals_lock:
            obj = self._locals.get(cls)
            if obj is None:
                obj = self._locals[cls] = cls()
            return obj

    @cached_property
    def wecom(self) -> WeComClient:
        """The WeCom adapter, created on first use (commands that never call WeCom skip it)."""
        from bot.wecom.client import WeComClient

        return WeComClient(
            self.settings.wecom, self.settings.limits, db=self.db, stop=self.stopping
        )

    def close(self) -> None:
        self.stopping.set()
        self.explain.close()
        self.touched.close()
        with self._locals_lock:
            held = list(self._locals.values())
        for obj in held:  # per-process state holding resources (the re-tier's engine)
            closer = getattr(obj, "close", None)
            if callable(closer):
                closer()
        self.db.dispose()


def before_fork() -> None:
    """Join the native threads a forked child could not join itself (call before os.fork).

    `import duckdb` opens a default in-memory connection with a thread pool. A fork copies
    that connection but not its threads, and glibc hands their stacks to the child's own
    threads: at the child's exit DuckDB joins a thread that is not its own and the process
    dies of SIGSEGV or SIGABRT. Closing the connection joins the pool; nothing of ours uses
    it (engines open their own connections, in the process that uses them).
    """
    duckdb = sys.modules.get("duckdb")
    if duckdb is not None:
        duckdb.default_connection().close()


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Write to whatever sys.stderr is now (it is swapped under test and by some servers)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: str, settings: Settings | None = None) -> None:
    """Log one line per record to stderr with time, level and logger name, secrets masked."""
    from bot.logredact import RedactingFilter, settings_secrets

    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(settings_secrets(settings) if settings else ()))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # urllib3 logs every request URL at DEBUG, and WeCom URLs carry the access token.
    logging.getLogger("urllib3").setLevel(max(logging.INFO, logging.getLogger().level))

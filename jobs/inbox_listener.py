"""Wake this process's inbox workers when another process stores a callback (PostgreSQL).

With `tagbot serve --no-jobs` in front and `tagbot worker` processes behind, the request
cannot set the workers' threading.Event; PostgreSQL's LISTEN/NOTIFY carries the wake-up
across processes instead of the workers' few-second safety poll.
"""

from __future__ import annotations

import logging
import threading
import weakref

import psycopg

from bot.callbacks import inbox
from bot.runtime import Runtime
from jobs.specs import WorkerSpec

log = logging.getLogger("tagbot.jobs")

WAIT_SECONDS = 1.0  # how long one step listens before checking for shutdown
_connections: weakref.WeakKeyDictionary[Runtime, psycopg.Connection[tuple[object, ...]]] = (
    weakref.WeakKeyDictionary()
)
_schemas: weakref.WeakKeyDictionary[Runtime, str] = weakref.WeakKeyDictionary()
_never: weakref.WeakKeyDictionary[Runtime, threading.Event] = weakref.WeakKeyDictionary()


def _dsn(rt: Runtime) -> str:
    url = rt.db.engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _connection(rt: Runtime) -> psycopg.Connection[tuple[object, ...]]:
    conn = _connections.get(rt)
    if conn is None or conn.closed:
        conn = psycopg.connect(_dsn(rt), autocommit=True)
        conn.execute(f"LISTEN {inbox.NOTIFY_CHANNEL}")
        row = conn.execute("SELECT current_schema()").fetchone()
        _schemas[rt] = str(row[0]) if row else ""
        _connections[rt] = conn
    return conn


def _step(rt: Runtime) -> int:
    if rt.db.is_sqlite:
        rt.stopping.wait(3600)  # one process per SQLite file: the in-process event suffices
        return 0
    try:
        conn = _connection(rt)
        woken = 0
        for note in conn.notifies(timeout=WAIT_SECONDS, stop_after=1):
            if note.payload != _schemas.get(rt):
                continue  # another deployment's schema in the same database
            rt.handoff.nudge()  # stored by another process: claim, not hand-off
            rt.wakeups.inbox.set()
            woken += 1
    except psycopg.Error as exc:
        log.warning("inbox listener: %s; reconnecting", exc)
        _connections.pop(rt, None)
        rt.stopping.wait(1.0)
        return 0
    if rt.stopping.is_set():
        conn.close()
    return woken


INBOX_LISTENER = WorkerSpec(
    name="inbox-listener",
    step=_step,
    wakeup=lambda rt: _never.setdefault(rt, threading.Event()),
    threads=lambda _s: 1,
    idle_seconds=0.0,  # the step itself blocks on the connection
)

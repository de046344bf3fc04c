"""Engine and session factory, with the SQLite settings that make it safe to share."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bot.db.driver import DriverWrite
from bot.db.writequeue import WriteQueue


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling starts transactions lazily and cannot take the
    # write lock up front, so two writers can deadlock; we issue BEGIN ourselves instead.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=15000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Readers don't need the write lock; everyone else takes it at BEGIN so a
        # transaction never fails half-way upgrading from read to write.
        readonly = conn.get_execution_options().get("sqlite_readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def sqlite_file(url: str) -> Path | None:
    """Return the file a SQLite URL names, or None (PostgreSQL, in-memory, a URI filename)."""
    parsed = make_url(url)
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return None
    if parsed.query.get("uri") in ("true", "1"):  # file:...?mode=... names no plain path
        return None
    return Path(path)


def database_label(url: str) -> str:
    """Name a database for an operator: the SQLite file, else the URL without its password."""
    path = sqlite_file(url)
    if path is not None:
        return str(path)
    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine for SQLite (WAL, foreign keys) or PostgreSQL (psycopg 3)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    if parsed.drivername == "postgresql":
        # A bare postgresql:// URL would pick psycopg2, which we do not ship.
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """One engine and its session factory; the caller owns each transaction."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite lets one writer in at a time: its writers queue here first (writequeue.py)
        self._queue = WriteQueue(self.engine.url.database) if self.is_sqlite else None
        self._local = threading.local()
        self._writes_lock = threading.Lock()
        self.writes = 0  # write transactions opened (on SQLite: write-lock acquisitions)

    @property
    def writing(self) -> bool:
        """Tell whether this thread is inside a write transaction on this database."""
        return bool(getattr(self._local, "writing", False))

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def write(self, *, urgent: bool = False) -> Iterator[Session]:
        """Open a write transaction: committed on success, rolled back on error.

        The one way to write. Never nest these, and never call WeCom inside one: on SQLite
        it holds every other writer, the callback acks included. `urgent` is for the few
        short transactions someone waits on (the callback ack): they go ahead of
        background writers already queued.
        """
        with self._turn(urgent=urgent), self.sessionmaker.begin() as session:
            yield session

    @contextmanager
    def write_driver(self, *, urgent: bool = False) -> Iterator[DriverWrite]:
        """Open a write transaction on the bare driver connection (bot/db/driver.py).

        For the hottest short writes only (the callback ack's store, the WeCom budget's
        bookings): the same queue, rules and commit-or-roll-back as `write()`, without
        the session's CPU.
        """
        with self._turn(urgent=urgent):
            raw = self.engine.raw_connection()
            try:
                txn = DriverWrite(self.engine, raw.driver_connection)
                try:
                    txn.begin()
                    yield txn
                except BaseException:
                    txn.rollback()
                    raise
                txn.commit()
            finally:
                raw.close()  # back to the pool

    @contextmanager
    def _turn(self, *, urgent: bool) -> Iterator[None]:
        """Count a write transaction and wait for its turn (SQLite's queue)."""
        if self.writing:  # the queue is not re-entrant: this would wait for itself
            raise RuntimeError("a write transaction inside another one")
        self._local.writing = True
        with self._writes_lock:
            self.writes += 1
        try:
            if self._queue is None:
                yield
                return
            with self._queue.turn(urgent=urgent):
                yield
        finally:
            self._local.writing = False

    @contextmanager
    def read(self) -> Iterator[Session]:
        """Open a read-only session (no write lock on SQLite)."""
        session = self.sessionmaker()
        session.connection(execution_options={"sqlite_readonly": True})
        try:
            yield session
        finally:
            session.close()  # ends the transaction; loaded objects stay readable

    def dispose(self) -> None:
        self.engine.dispose()

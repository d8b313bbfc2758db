"""Engine and session handling: SQLite (WAL) by default, PostgreSQL by URL.

``Database.unit_of_work()`` is the one way to write: it commits or rolls back as a whole,
which is what lets the dispatcher commit state, outbox rows, wake-ups and the "event
processed" mark in one transaction.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from crm_journeys import jsontext

ANNOUNCE = "crm_journeys_announce"  # session/connection info flag: announce after commit
READ_ONLY = "crm_journeys_read_only"  # execution option of ``Database.reading`` sessions


def default_url() -> str:
    """The URL ``crm_journeys.config`` resolves (flag-less): the environment's, else
    SQLite in the instance folder."""
    from crm_journeys.config import resolve

    return resolve().database_url


class Database:
    """One engine and session factory per process (per worker, on PostgreSQL)."""

    def __init__(self, url: str | None = None, *, pool_size: int = 5, echo: bool = False,
                 pre_ping: bool = True):
        self.url = url or default_url()
        self.engine = _make_engine(self.url, pool_size=pool_size, echo=echo, pre_ping=pre_ping)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # the same pool, marked so a SQLite transaction begins without the write lock
        self._readers = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)
        self._listeners: list[Callable[[], None]] = []
        self.own_wake_sockets: set[str] = set()  # this process's workers' (``storage.wake``)

    def on_announce(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever new work is committed in this process (a worker's
        wake event); returns the function that unsubscribes it."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def announce(self) -> None:
        """New inbox events were just committed here: wake this process's worker loops,
        and on SQLite the workers of other processes (``storage.wake``). On PostgreSQL
        they hear the NOTIFY ``ingest`` sent inside the transaction."""
        self.wake_here()
        if self.is_sqlite:
            from crm_journeys.storage.wake import nudge, wake_folder

            folder = wake_folder(self)
            if folder is not None:
                nudge(folder, self.own_wake_sockets)

    def wake_here(self) -> None:
        """Wake this process's worker loops only."""
        for callback in list(self._listeners):
            callback()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        session = self.sessions()
        try:
            yield session
            session.commit()
            if session.info.pop(ANNOUNCE, False):
                self.announce()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads only. On SQLite it does not queue for the write lock
        (``BEGIN`` instead of ``BEGIN IMMEDIATE``; WAL readers never wait for writers), so
        a worker asking "is anything due?" every pass costs the web app and the other
        loops nothing. Anything written in it is rolled back."""
        session = self._readers()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (``crm-journeys db upgrade``)."""
        from crm_journeys.storage.migrate import upgrade

        upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


def _make_engine(url: str, *, pool_size: int, echo: bool, pre_ping: bool) -> Engine:
    """``pre_ping`` tests a pooled PostgreSQL connection before each use, a round trip per
    transaction: the web app wants it (a request never meets a connection the server
    dropped), the worker does not (its loops retry a failed pass, and the failure has
    already made SQLAlchemy replace the pool's dropped connections)."""
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        # JSON columns are text that SQLAlchemy converts; psycopg converts PostgreSQL's itself
        kwargs.update(json_serializer=jsontext.dumps, json_deserializer=jsontext.read)
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=pre_ping)
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Autocommit at the driver level so SQLAlchemy's "begin" event decides how a
    # transaction starts (BEGIN IMMEDIATE: writers queue instead of failing to upgrade).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(_busy_timeout())
    cur.close()


BUSY_WAIT = 30.0  # seconds a writer waits for SQLite's write lock before giving up
_FIRST_RETRY, _LONGEST_RETRY = 0.0001, 0.002  # seconds between tries, growing by half each time


def _busy_timeout() -> str:
    return f"PRAGMA busy_timeout={int(BUSY_WAIT * 1000)}"


def _sqlite_begin_immediate(conn: Any) -> None:
    """Take SQLite's write lock, trying again every 0.1-2 ms while another process holds it.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 and then
    100 ms between tries, so a writer that finds the lock taken waits on average far
    longer than the holder keeps it: with the web app and the worker writing one file at
    500 events/s, a third of the worker's time went to those sleeps and webhooks waited
    up to 1.3 s for their outbox row (bench P6). Short, growing retries cut that p99 to
    0.11-0.2 s in three runs of four (0.96 s in the fourth), for 0.3-0.5 ms more worker
    CPU per event spent retrying. The handler is off only while this loop
    runs; every other statement keeps ``busy_timeout``."""
    if conn.get_execution_options().get(READ_ONLY):
        conn.exec_driver_sql("BEGIN")  # a read snapshot: takes no lock until it reads
        return
    raw = conn.connection.driver_connection
    raw.execute("PRAGMA busy_timeout=0")
    try:
        delay, deadline = _FIRST_RETRY, time.monotonic() + BUSY_WAIT
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY  # and its extended codes
                if not busy or time.monotonic() > deadline:
                    break
            time.sleep(delay)
            delay = min(delay * 1.5, _LONGEST_RETRY)
    finally:
        raw.execute(_busy_timeout())
    conn.exec_driver_sql("BEGIN IMMEDIATE")  # a last try, raising SQLAlchemy's error if it fails

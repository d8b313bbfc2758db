"""Engine and session handling: SQLite (WAL) by default, PostgreSQL by URL.

``Database.unit_of_work()`` is the one way to write: it commits or rolls back as a whole,
which is what lets the dispatcher commit state, outbox rows, wake-ups and the "event
processed" mark in one transaction.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from crm_journeys import jsontext

ENV_URL = "CRM_JOURNEYS_DATABASE_URL"


def default_url(instance_path: str | os.PathLike[str] = "instance") -> str:
    """The embedded default: a SQLite file in the instance folder."""
    path = Path(instance_path)
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(path / 'crm_journeys.db').resolve()}"


class Database:
    """One engine and session factory per process (per worker, on PostgreSQL)."""

    def __init__(self, url: str | None = None, *, pool_size: int = 5, echo: bool = False):
        self.url = url or os.environ.get(ENV_URL) or default_url()
        self.engine = _make_engine(self.url, pool_size=pool_size, echo=echo)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

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
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (``crm-journeys db upgrade``)."""
        from crm_journeys.storage.migrate import upgrade

        upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


def _make_engine(url: str, *, pool_size: int, echo: bool) -> Engine:
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        # JSON columns are text that SQLAlchemy converts; psycopg converts PostgreSQL's itself
        kwargs.update(json_serializer=jsontext.dumps, json_deserializer=jsontext.read)
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
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
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")

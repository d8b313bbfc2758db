"""SQLite's write lock taken by short retries (``storage.db._sqlite_begin_immediate``):
a writer that finds the lock held waits for it instead of failing, gives up with
SQLAlchemy's error after ``BUSY_WAIT``, and leaves the connection's own busy timeout as
it was for every other statement."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from crm_journeys.storage import db as db_module
from crm_journeys.storage.db import Database


def _holder(path: Path, release: threading.Event, held: threading.Event) -> None:
    """Another writer: holds the write lock until told to let go."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    con.execute("CREATE TABLE IF NOT EXISTS other (x)")
    held.set()
    release.wait(10)
    con.execute("COMMIT")
    con.close()


def _write(database: Database) -> int:
    with database.unit_of_work() as s:
        s.execute(text("CREATE TABLE IF NOT EXISTS t (x)"))
        s.execute(text("INSERT INTO t VALUES (1)"))
        return int(s.execute(text("PRAGMA busy_timeout")).scalar() or 0)


def test_a_writer_waits_for_the_lock_and_keeps_its_busy_timeout(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'lock.db'}")
    _write(database)
    release, held = threading.Event(), threading.Event()
    holder = threading.Thread(target=_holder, args=(tmp_path / "lock.db", release, held))
    holder.start()
    held.wait(10)
    threading.Timer(0.2, release.set).start()
    try:
        timeout = _write(database)  # blocks until the holder commits, then writes
    finally:
        release.set()
        holder.join()
    assert timeout == int(db_module.BUSY_WAIT * 1000)
    with database.unit_of_work() as s:
        assert s.execute(text("SELECT count(*) FROM t")).scalar() == 2
    database.dispose()


def test_a_writer_gives_up_after_busy_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = Database(f"sqlite:///{tmp_path / 'lock.db'}")
    _write(database)
    monkeypatch.setattr(db_module, "BUSY_WAIT", 0.1)
    database.dispose()  # new connections take the short timeout
    release, held = threading.Event(), threading.Event()
    holder = threading.Thread(target=_holder, args=(tmp_path / "lock.db", release, held))
    holder.start()
    held.wait(10)
    try:
        with pytest.raises(OperationalError, match="locked"):
            _write(database)
    finally:
        release.set()
        holder.join()
    assert _write(database) == 100  # and the next one, with the lock free, goes through
    database.dispose()

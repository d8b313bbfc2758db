"""PostgreSQL push: a worker process hears ``NOTIFY crm_journeys_work`` and wakes at once.

``ingest`` sends the NOTIFY inside the transaction that stores new inbox events, so it
arrives when (and only if) they are committed, in whichever process stored them (the web
app, another worker). This thread holds one extra connection, in autocommit, that does
nothing but ``LISTEN``; each notification calls ``Database.wake_here``, which sets the
worker's wake events. If the connection drops it reconnects with backoff, and the
worker's adaptive poll covers the gap, so a lost notification only costs a poll interval.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from crm_journeys.runtime.ingest import CHANNEL
from crm_journeys.storage.db import Database

log = logging.getLogger(__name__)


def listen(db: Database, stop: threading.Event) -> threading.Thread:
    """Start the listener thread; it ends soon after ``stop`` is set."""
    thread = threading.Thread(target=_run, args=(db, stop), name="crm-journeys-listen", daemon=True)
    thread.start()
    return thread


def _run(db: Database, stop: threading.Event) -> None:
    import psycopg

    conninfo = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    delay = 0.5
    while not stop.is_set():
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(f"LISTEN {CHANNEL}")
                delay = 0.5
                db.wake_here()  # anything stored while we were not listening
                _hear(conn, db, stop)
        except Exception:
            log.warning("LISTEN %s failed; reconnecting in %.1fs (polling meanwhile)", CHANNEL, delay,
                        exc_info=True)
            stop.wait(delay)
            delay = min(30.0, delay * 2)


def _hear(conn: Any, db: Database, stop: threading.Event) -> None:
    while not stop.is_set():
        if any(True for _ in conn.notifies(timeout=1.0, stop_after=1)):
            db.wake_here()

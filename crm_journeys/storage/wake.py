"""SQLite push between processes: a datagram per commit of new events, to each worker.

PostgreSQL has LISTEN/NOTIFY; SQLite has nothing, so a worker in its own process would
only poll. Instead each worker binds a Unix datagram socket in a folder next to the
database file (``<database>.wake/``), and ``Database.announce`` in any process on that
database sends one byte to every socket there after it committed new inbox events: a
``sendto`` that never blocks (a full queue already means "wake up"). The worker's reader
thread turns a datagram into its wake event. A socket left behind by a dead worker is
removed by the first sender that finds nobody reading it. The adaptive poll stays as the
safety net (a lost datagram costs one poll interval), and where sockets cannot be used
(a path longer than the 108 bytes Unix sockets allow, another OS) this does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crm_journeys.storage.db import Database

log = logging.getLogger(__name__)
MAX_PATH = 100  # bytes: Unix socket paths stop at 108


def wake_folder(db: Database) -> Path | None:
    """``<database file>.wake`` for a SQLite file, else None."""
    if not db.is_sqlite:
        return None
    name = db.engine.url.database
    if not name or name == ":memory:":
        return None
    return Path(name).resolve().with_name(Path(name).name + ".wake")


def nudge(folder: Path, own: set[str]) -> None:
    """One byte to every worker socket in ``folder`` but ``own``; removes dead ones."""
    try:
        paths = [p for p in folder.iterdir() if p.suffix == ".sock" and str(p) not in own]
    except OSError:  # no folder: no worker has ever listened on this database
        return
    if not paths:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        for path in paths:
            try:
                sender.sendto(b"!", str(path))
            except BlockingIOError:
                pass  # its queue is full: it has been woken already
            except (ConnectionRefusedError, FileNotFoundError):
                path.unlink(missing_ok=True)  # nobody reads it any more
            except OSError:
                log.debug("cannot nudge %s", path, exc_info=True)


def listen_local(db: Database, stop: threading.Event) -> threading.Thread | None:
    """Bind this worker's socket and start its reader thread (None if sockets cannot be used)."""
    folder = wake_folder(db)
    if folder is None:
        return None
    path = folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.sock"
    if len(str(path).encode()) > MAX_PATH:
        log.info("database path too long for a wake socket; the worker polls")
        return None
    folder.mkdir(exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(1.0)
    db.own_wake_sockets.add(str(path))
    thread = threading.Thread(target=_read, args=(db, sock, path, stop), name="crm-journeys-wake", daemon=True)
    thread.start()
    return thread


def _read(db: Database, sock: socket.socket, path: Path, stop: threading.Event) -> None:
    try:
        while not stop.is_set():
            try:
                sock.recv(64)
            except TimeoutError:
                continue
            db.wake_here()
    finally:
        sock.close()
        db.own_wake_sockets.discard(str(path))
        path.unlink(missing_ok=True)

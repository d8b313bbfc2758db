"""P6's receiving side: the real web app's events API (``POST /api/events``, bearer token,
marshmallow validation, one commit per request, answered 202) served by werkzeug's
threaded server, and an embedded worker thread, on one SQLite file.

When the worker commits a batch, the commit time of every event in it is noted; at
SIGTERM the latencies (commit of the event's outbox row minus the sender's timestamp)
are written to ``result.json``.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

from bench import workload
from crm_journeys.clock import Clock
from crm_journeys.runtime.dispatch import Dispatcher
from crm_journeys.runtime.services import Runtime
from crm_journeys.runtime.worker import Worker
from crm_journeys.storage.db import Database


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class TimedDispatcher(Dispatcher):
    def __init__(self, runtime: Runtime, committed: dict[int, float]):
        super().__init__(runtime)
        self.committed = committed
        self._batch: list[int] = []

    def process(self, session: Any, event: Any, now: datetime, batch: Any = None) -> None:
        super().process(session, event, now, batch)
        self._batch.append(event.id)

    def run_once(self, limit: int = 200, worker_id: str = "local") -> int:
        self._batch = []
        n = super().run_once(limit, worker_id)
        at = time.time()
        for event_id in self._batch:
            self.committed[event_id] = at
        return n


def main(folder: str) -> None:
    db = Database(f"sqlite:///{Path(folder) / 'p6.db'}")
    db.upgrade()
    tenant_id = workload.setup_tenant(db, datetime.now(UTC), [workload.welcome()])
    runtime = Runtime(db=db, clock=Clock())
    committed: dict[int, float] = {}
    worker = Worker(runtime, idle_sleep=0.02)
    worker.dispatcher = TimedDispatcher(runtime, committed)
    sent_at: dict[int, float] = {}
    from crm_journeys.app import create_app
    from crm_journeys.auth import create_api_token

    app = create_app({"CRM_JOURNEYS_DATABASE_URL": db.url, "SECRET_KEY": "bench"})
    with db.unit_of_work() as s:
        (Path(folder) / "token").write_text(create_api_token(s, tenant_id, "p6", role="editor"))

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    web = threading.Thread(target=server.serve_forever, daemon=True)
    web.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    (Path(folder) / "port").write_text(str(server.server_port))
    done.wait()
    server.shutdown()
    worker.stop()
    thread.join(30)
    from sqlalchemy import select

    from crm_journeys.storage.models import InboxEvent

    with db.unit_of_work() as s:
        for event_id, payload in s.execute(select(InboxEvent.id, InboxEvent.payload)):
            stamp = (payload.get("properties") or {}).get("sent_at")
            if stamp is not None:
                sent_at[event_id] = float(stamp)
    latencies = [(committed[i] - sent_at[i]) * 1000 for i in sent_at if i in committed]
    (Path(folder) / "result.json").write_text(json.dumps({"latencies_ms": latencies}))
    db.dispose()


if __name__ == "__main__":
    main(sys.argv[1])

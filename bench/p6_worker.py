"""P6's worker: its own process, as ``crm-journeys worker`` runs it (a ``Worker`` on its own
small connection pool), with a dispatcher that notes when each event's batch committed.

``python -m bench.p6_worker FOLDER DATABASE_URL WORKER_ID IDLE_SLEEP``. At SIGTERM the
worker finishes its pass and writes ``{event id: commit time}`` (``time.time()``, the clock
the sender stamps with) to ``FOLDER/commits-WORKER_ID.json``.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from crm_journeys.clock import Clock
from crm_journeys.runtime.batch import BatchCache
from crm_journeys.runtime.dispatch import Dispatcher
from crm_journeys.runtime.services import Runtime
from crm_journeys.runtime.worker import Worker
from crm_journeys.storage.db import Database
from crm_journeys.storage.models import InboxEvent


class TimedDispatcher(Dispatcher):
    """The real dispatcher; after each batch commits, stamps the events it handled. The
    outbox row of an entry is written in the same transaction as the event's "processed"
    mark, so this is the moment the row became visible."""

    def __init__(self, runtime: Runtime, committed: dict[int, float]):
        super().__init__(runtime)
        self.committed = committed
        self._batch: list[int] = []

    def process(self, session: Any, event: InboxEvent, now: datetime,
                batch: BatchCache) -> None:
        super().process(session, event, now, batch)
        self._batch.append(event.id)

    def run_once(self, limit: int = 200, worker_id: str = "local", hand_off: Any = None) -> int:
        self._batch = []
        n = super().run_once(limit, worker_id, hand_off=hand_off)
        at = time.time()
        for event_id in self._batch:
            self.committed[event_id] = at
        return n


def main(folder: str, url: str, worker_id: str, idle_sleep: float) -> None:
    """Run until SIGTERM, then write the commit stamps (pool size 2, as ``run_worker``)."""
    db = Database(url, pool_size=2)
    runtime = Runtime(db=db, clock=Clock())
    committed: dict[int, float] = {}
    worker = Worker(runtime, worker_id=worker_id, idle_sleep=idle_sleep)
    worker.dispatcher = TimedDispatcher(runtime, committed)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    (Path(folder) / f"ready-{worker_id}").write_text("ready")
    try:
        worker.run_forever()
    finally:
        db.dispose()
    out = Path(folder) / f"commits-{worker_id}.json"
    out.write_text(json.dumps(committed))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))

"""The extension's per-app state (database, runtime, embedded worker) and ``state()``, which
every view reads it through. It lives here, below the blueprints, so the views need not
import the extension that mounts them (which would tie every view to every other)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from flask import current_app

from crm_journeys.runtime.services import Runtime
from crm_journeys.runtime.worker import Worker
from crm_journeys.storage.db import Database


@dataclass
class State:
    db: Database
    runtime: Runtime
    worker: Worker | None = None
    worker_thread: threading.Thread | None = None
    metrics_page: Any = None  # runtime.backlog.MetricsPage, made on the first scrape

    def start_worker(self) -> None:
        """Web and worker in one process: the embedded default."""
        if self.worker_thread is not None:
            return
        self.worker = Worker(self.runtime, worker_id=f"embedded-{os.getpid()}")
        self.worker_thread = threading.Thread(target=self.worker.run_forever, name="crm-journeys-worker",
                                              daemon=True)
        self.worker_thread.start()
        # events other processes store (another web process, a CLI command) wake it too
        if self.db.is_postgres:
            from crm_journeys.runtime.listen import listen

            listen(self.db, self.worker.stop_event)
        else:
            from crm_journeys.storage.wake import listen_local

            listen_local(self.db, self.worker.stop_event)

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        if self.worker_thread is not None:
            self.worker_thread.join(timeout=10)
        self.worker = self.worker_thread = None


def state() -> State:
    return current_app.extensions["crm_journeys"]

"""The worker loop: due wake-ups, then the inbox, then the outbox, until told to stop.

It sleeps only when there is nothing to do, and never past the next due wake-up (the
short look-ahead), so waits fire on time without scanning. The long-running loop also
removes finished rows past their retention, a few small batches per pass
(``runtime.retention``); ``step`` and ``drain``, which tests and the simulator drive on a
virtual clock, never do, so a simulated year does not prune its own evidence.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from crm_journeys.runtime.dispatch import Dispatcher
from crm_journeys.runtime.outbox import OutboxRunner
from crm_journeys.runtime.retention import RetentionRunner
from crm_journeys.runtime.starting_points import fire_due as fire_starting_points
from crm_journeys.runtime.timers import fire_due, next_due
from crm_journeys.runtime.upkeep import CrmUpkeep

if TYPE_CHECKING:
    from crm_journeys.runtime.services import Runtime

log = logging.getLogger(__name__)


@dataclass
class Worker:
    runtime: Runtime
    worker_id: str = "local"
    idle_sleep: float = 0.5
    batch: int = 200
    stop_event: threading.Event = field(default_factory=threading.Event)
    prune_every: float | None = 900.0  # seconds between retention sweeps; None: never

    def __post_init__(self) -> None:
        self.dispatcher = Dispatcher(self.runtime)
        self.outbox = OutboxRunner(self.runtime, self.worker_id)
        self.upkeep = CrmUpkeep(self.runtime, self.worker_id)
        self.retention = (RetentionRunner(self.runtime, every=timedelta(seconds=self.prune_every))
                          if self.prune_every else None)

    def step(self) -> int:
        """One pass over all three queues; returns how much work it found."""
        done = fire_due(self.runtime, self.batch)
        done += fire_starting_points(self.runtime, self.batch)  # due dates and lapses -> inbox
        done += self.upkeep.run_once(self.batch)  # webhook hints fetched, scheduled syncs -> inbox
        done += self.dispatcher.run_once(self.batch, self.worker_id)
        done += self.outbox.run_once(self.batch)
        return done

    def drain(self, max_passes: int = 10_000) -> int:
        """Work until every queue is empty at the clock's current time (tests, simulate)."""
        total = 0
        for _ in range(max_passes):
            found = self.step()
            total += found
            if not found:
                return total
        raise RuntimeError("the queues did not drain: a loop is feeding itself")

    def run_forever(self) -> None:
        log.info("worker %s started", self.worker_id)
        while not self.stop_event.is_set():
            try:
                busy = self.step()
                if self.retention is not None:
                    busy += self.retention.run_due()
            except Exception:
                log.exception("worker pass failed; retrying")
                busy = 0
            if not busy:
                self.stop_event.wait(self._sleep_seconds())

    def _sleep_seconds(self) -> float:
        due = next_due(self.runtime)
        if due is None:
            return self.idle_sleep
        return max(0.0, min(self.idle_sleep, (due - self.runtime.clock.now()).total_seconds()))

    def stop(self) -> None:
        self.stop_event.set()


def advance_to(worker: Worker, clock: object, until: datetime) -> None:
    """Move a virtual clock to ``until`` stopping at every wake-up on the way (simulate)."""
    from crm_journeys.clock import VirtualClock

    assert isinstance(clock, VirtualClock)
    worker.drain()
    while True:
        due = next_due(worker.runtime)
        if due is None or due > until:
            break
        if due > clock.now():
            clock.set(due)
        if not worker.drain() and due <= clock.now():
            break  # due but not takeable (held by a live lease): nothing moves until later
    if until > clock.now():
        clock.set(until)
    worker.drain()


def run_worker(database_url: str, worker_id: str, stop_event: threading.Event | None = None, *,
               batch: int = 200, idle_sleep: float = 0.5, lease_seconds: float | None = None,
               pool_size: int = 2) -> None:
    """One scale-out worker process (``crm-journeys worker``): its own small connection
    pool, claims shared with every other worker through the database (see ``claims``)."""
    from crm_journeys.runtime.collector import tune_collector
    from crm_journeys.runtime.services import Runtime
    from crm_journeys.storage.db import Database

    db = Database(database_url, pool_size=pool_size)
    runtime = Runtime(db=db)
    tune_collector()
    if lease_seconds is not None:
        runtime.claims.lease = timedelta(seconds=lease_seconds)
    worker = Worker(runtime, worker_id=worker_id, idle_sleep=idle_sleep, batch=batch,
                    stop_event=stop_event or threading.Event())
    try:
        worker.run_forever()
    finally:
        db.dispose()

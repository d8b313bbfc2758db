"""The worker: due wake-ups and the inbox, CRM upkeep, and delivery, each in its own loop.

``run_forever`` runs three loops (``runtime.loops``), so none waits for another:

* **decisions**: due wake-ups, due dates and lapses, then the inbox. It talks to the
  database only, so a CRM that hangs never delays a decision. It sleeps only when there is
  nothing to do, never past the next due wake-up, and wakes at once when work is
  announced (``Database.announce``: the events API in this process; PostgreSQL
  ``NOTIFY`` from other processes, ``runtime.listen``).
* **delivery**: the outbox, through a bounded pool fair across lanes (``runtime.delivery``).
* **upkeep**: webhook hints fetched from the CRM, scheduled syncs, and the retention sweep
  (``runtime.retention``), a few small batches per pass.

Each loop survives its own failures (logged, retried with backoff) and reports when it
last completed a pass (``health``, read by ``/healthz``).

``step`` and ``drain`` run one pass over everything in order, on the caller's thread,
with the sequential outbox runner: tests and the simulator drive them on a virtual clock
(and never prune, so a simulated year does not remove its own evidence).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from crm_journeys import metrics
from crm_journeys.runtime.delivery import PER_LANE, THREADS, Delivery
from crm_journeys.runtime.dispatch import Dispatcher
from crm_journeys.runtime.loops import Loop, lingering
from crm_journeys.runtime.outbox import OutboxRunner
from crm_journeys.runtime.retention import RetentionRunner
from crm_journeys.runtime.starting_points import fire_due as fire_starting_points
from crm_journeys.runtime.timers import decisions_due, fire_due, next_due
from crm_journeys.runtime.upkeep import CrmUpkeep

if TYPE_CHECKING:
    from crm_journeys.runtime.services import Runtime

log = logging.getLogger(__name__)
LINGER = 0.015  # seconds the decisions loop lets inbox events gather under a steady stream
RECHECK = timedelta(seconds=0.1)  # between reads of the next due wake-up, date or lapse


@dataclass
class Worker:
    runtime: Runtime
    worker_id: str = "local"
    idle_sleep: float = 0.5
    batch: int = 200
    stop_event: threading.Event = field(default_factory=threading.Event)
    prune_every: float | None = 900.0  # seconds between retention sweeps; None: never
    threads: int = THREADS  # delivery pool size
    per_lane: int = PER_LANE  # most rows of one lane in flight at once
    loops: dict[str, Loop] = field(default_factory=dict)
    _due_cache: tuple[datetime | None, datetime | None] = (None, None)  # (next due, read at)
    _decided: int = 0  # inbox events of the last decisions pass (how long to let the next gather)

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
        """The three loops until ``stop``: decisions on this thread, the others beside it."""
        log.info("worker %s started", self.worker_id)
        delivery = Delivery(self.runtime, self.worker_id, threads=self.threads, per_lane=self.per_lane)
        self.loops = {
            "decisions": Loop("decisions", self._decide, self.stop_event, max_wait=self.idle_sleep,
                              until_due=self._until_due,
                              linger=self._linger),
            "delivery": Loop("delivery", delivery.run_once, self.stop_event, wake=delivery.wake,
                             max_wait=self.idle_sleep),
            "upkeep": Loop("upkeep", self._upkeep, self.stop_event, min_wait=0.05,
                           max_wait=max(self.idle_sleep, 1.0), stale_after=600.0),
        }
        # on PostgreSQL ``_decide`` runs delivery passes between decisions (bench P5: +7 %
        # events/s); on SQLite their writes would only queue for the one write lock
        # beside the decisions loop's own (bench P3: wake-ups later)
        delivery.assisted = self.runtime.claims.postgres
        self._delivery = delivery
        unsubscribe = self.runtime.db.on_announce(self.loops["decisions"].wake.set)
        threads = [threading.Thread(target=self.loops[name].run, name=f"crm-journeys-{name}", daemon=True)
                   for name in ("delivery", "upkeep")]
        for thread in threads:
            thread.start()
        try:
            self.loops["decisions"].run()
        finally:
            self.stop_event.set()
            unsubscribe()
            for thread in threads:
                thread.join(timeout=15)
            delivery.shutdown()
            log.info("worker %s stopped", self.worker_id)

    def _decide(self) -> int:
        """The inbox first (a pushed event is what woke this pass), then what fell due."""
        decided = self._decided = self.dispatcher.run_once(self.batch, self.worker_id, hand_off=self._delivery)
        metrics.DECISIONS.labels("event").inc(decided)
        fired = 0
        if self._decisions_due():
            fired = fire_due(self.runtime, self.batch) + fire_starting_points(self.runtime, self.batch)
        if fired:
            self._delivery.want_claim()  # what the wake-ups decided may have queued actions
        return decided + fired + (self._delivery.assist() if self._delivery.assisted else 0)

    def _linger(self) -> float:
        """Let inbox events gather, but never past the next due wake-up, date or lapse."""
        pause = lingering(self._decided, self.batch, LINGER)
        if pause <= 0:
            return 0.0
        until = self._until_due()
        return pause if until is None else max(0.0, min(pause, until))

    def _decisions_due(self) -> bool:
        due = self._next_decision()
        return due is not None and due <= self.runtime.clock.now()

    def _next_decision(self) -> datetime | None:
        """The next due wake-up, date or lapse, read (no write lock) at most every
        ``RECHECK`` while it is still ahead: the loop asks every pass, and
        three write transactions to find nothing due cost more than the decisions."""
        now = self.runtime.clock.now()
        due, read_at = self._due_cache
        if read_at is None or now - read_at >= RECHECK or (due is not None and due <= now):
            with self.runtime.db.reading() as session:
                due = decisions_due(session)
            self._due_cache = (due, now)
        return due
    def _upkeep(self) -> int:
        done = self.upkeep.run_once(self.batch)
        if done:
            self.loops["decisions"].wake.set()
        if self.retention is not None:
            done += self.retention.run_due()
        return done

    def _until_due(self) -> float | None:
        due = self._next_decision()
        return None if due is None else (due - self.runtime.clock.now()).total_seconds()

    def health(self) -> dict[str, dict[str, object]]:
        """Each loop's time since its last good pass and whether that is too long."""
        return {name: loop.health() for name, loop in self.loops.items()}

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
               pool_size: int | None = None, threads: int = THREADS, per_lane: int = PER_LANE,
               metrics_port: int | None = None) -> None:
    """One scale-out worker process (``crm-journeys worker``): its own small connection
    pool, claims shared with every other worker through the database (see ``claims``)."""
    from crm_journeys.runtime.collector import tune_collector
    from crm_journeys.runtime.listen import listen
    from crm_journeys.runtime.services import Runtime
    from crm_journeys.runtime.status_server import serve_status
    from crm_journeys.storage.db import Database
    from crm_journeys.storage.wake import listen_local

    # connections: the three loops, and delivery threads whose action writes the database
    # (the sandbox CRM); up to twice this many under load (``max_overflow``)
    db = Database(database_url, pool_size=pool_size or 2 + threads // 2, pre_ping=False)
    runtime = Runtime(db=db)
    tune_collector()
    if lease_seconds is not None:
        runtime.claims.lease = runtime.claims.outbox_lease = timedelta(seconds=lease_seconds)
    worker = Worker(runtime, worker_id=worker_id, idle_sleep=idle_sleep, batch=batch,
                    stop_event=stop_event or threading.Event(), threads=threads, per_lane=per_lane)
    listener = listen(db, worker.stop_event) if db.is_postgres else listen_local(db, worker.stop_event)
    status = serve_status(worker, metrics_port) if metrics_port is not None else None
    try:
        worker.run_forever()
    finally:
        if status is not None:
            status.shutdown()
        if listener is not None:
            listener.join(timeout=5)
        db.dispose()

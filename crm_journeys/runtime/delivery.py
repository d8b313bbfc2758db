"""The worker's delivery pool: outbox rows run concurrently, a fair share per lane.

``OutboxRunner.run_once`` runs a batch one row after another (tests and the simulator
drive it on a virtual clock). A running worker delivers through this pool instead, so a
slow host holds back only its own lane (``runtime.lanes``):

* **Bounded and fair.** At most ``threads`` rows are in flight, at most ``per_lane`` of
  them from one lane (tenant and host), and one at a time per contact, so a contact's rows
  still run in order. Each claim reads the oldest due rows outside full lanes and takes
  them one lane after another in turn.
* **No waiting in the worker.** Connectors built for delivery never sleep on a host's
  Retry-After; a host that fails parks its lane in the database (every worker sees it)
  and the row's Retry-After becomes its next attempt time.
* **Heartbeat.** The loop renews the lease of every row still in flight, every third of
  the lease, so no other worker takes a row however long its host takes, while a killed
  worker's rows are free again within one short lease (``claims.OUTBOX_LEASE``).
* **Closing.** Pool threads only run actions; the loop thread closes what finished, all
  of it in one transaction (``OutboxRunner._close``, which falls back to one row per
  transaction), right after it finished, so a non-idempotent row is closed at once, as
  in the sequential runner. A row whose close fails is dropped from the heartbeat, so it
  re-runs after its lease (its idempotency key makes that harmless).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from crm_journeys.runtime import lanes
from crm_journeys.runtime.outbox import Claimed, Closing, OutboxRunner, PassCache
from crm_journeys.storage.models import Lane, OutboxMessage

if TYPE_CHECKING:
    from crm_journeys.runtime.services import Runtime

log = logging.getLogger(__name__)
THREADS = 8
PER_LANE = 4
CACHE_FOR = 30.0  # seconds a tenant's settings and connector are reused between claims


class Delivery:
    def __init__(self, runtime: Runtime, worker_id: str, *, threads: int = THREADS,
                 per_lane: int = PER_LANE, on_done: threading.Event | None = None):
        self.rt = runtime
        self.worker_id = worker_id
        self.threads = max(1, threads)
        self.per_lane = max(1, min(per_lane, self.threads))
        self.runner = OutboxRunner(runtime, worker_id)
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="crm-journeys-deliver")
        self.inflight: dict[int, Claimed] = {}
        self.finished: queue.SimpleQueue[Closing] = queue.SimpleQueue()
        self.wake = on_done or threading.Event()  # set when a row finishes: close it now
        self._cache = PassCache(runtime, delivery=True)
        self._cache_at = time.monotonic()
        self._renewed = time.monotonic()

    def run_once(self) -> int:
        """Close what finished, renew leases when due, fill free threads; how much happened."""
        closed = self._close_finished()
        self._heartbeat()
        started = self._start()
        return closed + started

    def busy(self) -> bool:
        return bool(self.inflight)

    def shutdown(self, wait: float = 10.0) -> None:
        """Stop taking rows, let running ones finish (up to ``wait``) and close them."""
        deadline = time.monotonic() + wait
        while self.inflight and time.monotonic() < deadline:
            self.wake.wait(0.05)
            self.wake.clear()
            self._close_finished()
        self.pool.shutdown(wait=False, cancel_futures=True)

    # --- claiming ---------------------------------------------------------------------
    def _start(self) -> int:
        free = self.threads - len(self.inflight)
        if free <= 0:
            return 0
        per_lane = Counter(row.lane for row in self.inflight.values())
        full = {lane for lane, n in per_lane.items() if n >= self.per_lane}
        budgets: dict[str, Lane] = {}

        def choose(session: Session, rows: list[OutboxMessage]) -> list[OutboxMessage]:
            budgets.update(lanes.budgets(session, self.rt.clock.now(),
                                         {r.lane for r in rows}, self.rt.claims.postgres))
            taken = lanes.pick(rows, free, lambda lane: self._room(lane, per_lane, budgets))
            for row in taken:
                if row.lane in budgets:
                    budgets[row.lane].used += 1
            return taken

        claimed = self.runner._claim(free * 4, skip_lanes=full, choose=choose,
                                     skip_contacts={r.contact.id for r in self.inflight.values()})
        cache = self._pass_cache()
        for row in claimed:
            self.inflight[row.id] = row
            self.pool.submit(self._deliver, row, cache)
        return len(claimed)

    def _room(self, lane: str, per_lane: Counter[str], budgets: dict[str, Lane]) -> int:
        room = self.per_lane - per_lane[lane]
        budget = budgets.get(lane)
        if budget is not None and budget.budget_per_minute is not None:
            room = min(room, budget.budget_per_minute - budget.used)
        return room

    def _pass_cache(self) -> PassCache:
        """Tenant settings and connectors for a while, not for ever: an admin's change of a
        tenant's settings reaches the pool within ``CACHE_FOR`` seconds."""
        if time.monotonic() - self._cache_at > CACHE_FOR:
            self._cache, self._cache_at = PassCache(self.rt, delivery=True), time.monotonic()
        return self._cache

    # --- running (pool threads) -------------------------------------------------------
    def _deliver(self, row: Claimed, cache: PassCache) -> None:
        try:
            closing = self.runner._run(row, cache)
        except BaseException as exc:  # _run handles Exception; this is the last guard
            closing = self.runner._retry(row, f"{type(exc).__name__}: {exc}", None)
        self.finished.put(closing)
        self.wake.set()

    # --- closing and heartbeat (loop thread) ------------------------------------------
    def _close_finished(self) -> int:
        done: list[Closing] = []
        while True:
            try:
                done.append(self.finished.get_nowait())
            except queue.Empty:
                break
        if not done:
            return 0
        try:
            self.runner._close(list(done))
        except Exception:
            log.exception("closing %d delivered outbox rows failed; they re-run after their lease",
                          len(done))
        finally:
            for closing in done:
                self.inflight.pop(closing.row.id, None)
        return len(done)

    def _heartbeat(self) -> None:
        every = self.rt.claims.outbox_lease.total_seconds() / 3
        if not self.inflight or time.monotonic() - self._renewed < every:
            return
        with self.rt.db.unit_of_work() as s:
            self.rt.claims.renew(s, self.rt.clock.now(), list(self.inflight), self.worker_id)
        self._renewed = time.monotonic()

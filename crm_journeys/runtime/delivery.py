"""The worker's delivery pool: outbox rows run concurrently, a fair share per lane.

``OutboxRunner.run_once`` runs a batch one row after another (tests and the simulator
drive it on a virtual clock). A running worker delivers through this pool instead, so a
slow host holds back only its own lane (``runtime.lanes``):

* **Bounded and fair.** At most ``threads`` rows run at once, at most ``per_lane`` of them
  from one lane (tenant and host), and one at a time per contact, so a contact's rows
  still run in order. Rows are claimed ahead, in batches (one transaction for many rows),
  into a queue per lane; a free thread takes the next row one lane after another in
  turn, so a lane whose host hangs holds its own threads and queue, never anyone else's.
  A lane holds at most ``BACKLOG`` x ``per_lane`` leased rows, the worker ``BACKLOG`` x
  ``threads``.
* **No waiting in the worker.** Connectors built for delivery never sleep on a host's
  Retry-After; a host that fails parks its lane in the database (every worker sees it),
  the row's Retry-After becomes its next attempt time, and the lane's queued rows are
  handed back at once (their lease cleared) for whoever finds the lane open again.
* **Heartbeat.** The loop renews the lease of every row still in flight, every third of
  the lease, so no other worker takes a row however long its host takes, while a killed
  worker's rows are free again within one short lease (``claims.OUTBOX_LEASE``).
* **Closing.** Pool threads only run actions; the loop thread closes what finished in one
  transaction (``OutboxRunner.close``, which falls back to one row per transaction): at
  once when a row's effect is not idempotent (as in the sequential runner) or its host
  failed, else in batches of up to ``CLOSE_BATCH`` rows or ``FLUSH_AFTER`` seconds. A row whose close fails is dropped from the heartbeat, so it
  re-runs after its lease (its idempotency key makes that harmless).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlalchemy.orm import Session

from crm_journeys.runtime import lanes
from crm_journeys.runtime.outbox import FLUSH_AFTER, Claimed, Closing, OutboxRunner, PassCache
from crm_journeys.storage.models import Lane, OutboxMessage

if TYPE_CHECKING:
    from crm_journeys.runtime.services import Runtime

log = logging.getLogger(__name__)
THREADS = 16
PER_LANE = 8
BACKLOG = 4  # leased rows per running slot: claims in batches without hoarding
CLOSE_BATCH = 64  # finished idempotent rows closed in one transaction
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
        self.inflight: dict[int, Claimed] = {}  # leased by this worker: queued or running
        self.queued: OrderedDict[str, deque[Claimed]] = OrderedDict()  # by lane, in turn order
        self.running: Counter[str] = Counter()  # rows running per lane
        self.finished: queue.SimpleQueue[Closing] = queue.SimpleQueue()
        self._waiting: list[Closing] = []  # finished, idempotent: closed together
        self._waiting_since = time.monotonic()
        self.wake = on_done or threading.Event()  # set when a row finishes: close it now
        self._cache = PassCache(runtime, delivery=True)
        self._cache_at = time.monotonic()
        self._retired: list[PassCache] = []  # replaced caches, closed once no row runs
        self._renewed = time.monotonic()

    def run_once(self) -> int:
        """Close what finished, renew leases when due, claim ahead, fill free threads;
        how much happened."""
        closed = self._close_finished()
        self._heartbeat()
        claimed = self._claim()
        started = self._start()
        return closed + claimed + started

    def shutdown(self, wait: float = 10.0) -> None:
        """Stop taking rows, hand back queued ones, let running ones finish (up to ``wait``)
        and close them."""
        self._release([row for rows in self.queued.values() for row in rows])
        self.queued.clear()
        deadline = time.monotonic() + wait
        while self.inflight and time.monotonic() < deadline:
            self.wake.wait(0.05)
            self.wake.clear()
            self._close_finished(now=True)
        self._close_finished(now=True)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self._retired.append(self._cache)
        self._close_retired()

    # --- claiming ---------------------------------------------------------------------
    def _claim(self) -> int:
        free = self.threads * BACKLOG - len(self.inflight)
        if free < self.threads and self.inflight:
            return 0  # enough ahead: claim in batches, not a row at a time
        held = Counter(row.lane for row in self.inflight.values())
        cap = self.per_lane * BACKLOG
        full = {lane for lane, n in held.items() if n >= cap}
        budgets: dict[str, Lane] = {}

        def choose(session: Session, rows: list[OutboxMessage]) -> list[OutboxMessage]:
            budgets.update(lanes.budgets(session, self.rt.clock.now(), {r.lane for r in rows},
                                         self.rt.claims.postgres))
            taken = lanes.pick(rows, free, lambda lane: self._room(cap - held[lane], budgets.get(lane)))
            for row in taken:
                if row.lane in budgets:
                    budgets[row.lane].used += 1
            return taken

        claimed = self.runner.claim(free * 2, skip_lanes=full, choose=choose,
                                     skip_contacts={r.contact.id for r in self.inflight.values()})
        for row in claimed:
            self.inflight[row.id] = row
            self.queued.setdefault(row.lane, deque()).append(row)
        return len(claimed)

    @staticmethod
    def _room(room: int, budget: Lane | None) -> int:
        if budget is not None and budget.budget_per_minute is not None:
            room = min(room, budget.budget_per_minute - budget.used)
        return room

    def _start(self) -> int:
        """Free threads take queued rows, one lane after another (a lane served goes to the
        back of the turn), never more than ``per_lane`` running from one lane."""
        started = 0
        cache = self._pass_cache()
        while sum(self.running.values()) < self.threads:
            lane = next((lane for lane, rows in self.queued.items()
                         if rows and self.running[lane] < self.per_lane), None)
            if lane is None:
                break
            row = self.queued[lane].popleft()
            self.queued.move_to_end(lane)
            if not self.queued[lane]:
                del self.queued[lane]
            self.running[lane] += 1
            self.pool.submit(self._deliver, row, cache)
            started += 1
        return started

    def _pass_cache(self) -> PassCache:
        """Tenant settings and connectors for a while, not for ever: an admin's change of a
        tenant's settings reaches the pool within ``CACHE_FOR`` seconds."""
        if time.monotonic() - self._cache_at > CACHE_FOR:
            self._retired.append(self._cache)
            self._cache, self._cache_at = PassCache(self.rt, delivery=True), time.monotonic()
        return self._cache

    def _close_retired(self) -> None:
        """Close replaced caches (their SMTP connections) once no pool thread can hold one:
        closing while a row runs could cut a message off mid-send."""
        if any(self.running.values()):
            return
        retired, self._retired = self._retired, []
        for cache in retired:
            cache.close()

    # --- running (pool threads) -------------------------------------------------------
    def _deliver(self, row: Claimed, cache: PassCache) -> None:
        try:
            closing = self.runner.run_row(row, cache)
        except BaseException as exc:  # run_row handles Exception; this is the last guard
            closing = self.runner.retry(row, f"{type(exc).__name__}: {exc}", None)
        self.finished.put(closing)
        self.wake.set()

    # --- closing, handing back and heartbeat (loop thread) ----------------------------
    def _close_finished(self, *, now: bool = False) -> int:
        """Close what finished: at once when a row's effect is not idempotent or its host
        failed (its lane must park), else together once ``CLOSE_BATCH`` rows or
        ``FLUSH_AFTER`` seconds have gathered (one transaction for many, as the
        sequential runner does); returns how many finished rows were taken in."""
        taken = 0
        while True:
            try:
                closing = self.finished.get_nowait()
            except queue.Empty:
                break
            self.running[closing.row.lane] -= 1
            if not self._waiting:
                self._waiting_since = time.monotonic()
            self._waiting.append(closing)
            taken += 1
        # nothing else running or queued: waiting would only delay the close
        urgent = any(c.at_once or c.host_failed for c in self._waiting) or not any(self.running.values())
        if self._waiting and (now or urgent or len(self._waiting) >= min(CLOSE_BATCH, self.threads)
                              or time.monotonic() - self._waiting_since >= FLUSH_AFTER):
            done, self._waiting = self._waiting, []
            self._close(done)
        self._close_retired()
        return taken

    def _close(self, done: list[Closing]) -> None:
        try:
            self.runner.close(list(done))
        except Exception:
            log.exception("closing %d delivered outbox rows failed; they re-run after their lease",
                          len(done))
        finally:
            for closing in done:
                self.inflight.pop(closing.row.id, None)
        failed = {c.row.lane for c in done if c.host_failed}
        self._release([row for lane in failed for row in self.queued.pop(lane, ())])

    def _release(self, rows: list[Claimed]) -> None:
        """Hand leased rows back unrun (their lane's host just failed: it is parked)."""
        if not rows:
            return
        try:
            with self.rt.db.unit_of_work() as s:
                s.execute(update(OutboxMessage)
                          .where(OutboxMessage.id.in_([r.id for r in rows]),
                                 OutboxMessage.claimed_by == self.worker_id, OutboxMessage.status == "pending")
                          .values(lease_until=None, claimed_by=None))
        except Exception:
            log.exception("handing back %d queued outbox rows failed; their lease runs out", len(rows))
        for row in rows:
            self.inflight.pop(row.id, None)

    def _heartbeat(self) -> None:
        every = self.rt.claims.outbox_lease.total_seconds() / 3
        if not self.inflight or time.monotonic() - self._renewed < every:
            return
        with self.rt.db.unit_of_work() as s:
            self.rt.claims.renew(s, self.rt.clock.now(), list(self.inflight), self.worker_id)
        self._renewed = time.monotonic()

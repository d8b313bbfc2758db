"""The worker's delivery pool: outbox rows run concurrently, a fair share per lane.

``OutboxRunner.run_once`` runs a batch one row after another (tests and the simulator
drive it on a virtual clock). A running worker delivers through this pool instead, so a
slow host holds back only its own lane (``runtime.lanes``):

* **Bounded and fair.** At most ``threads`` rows run at once, at most ``per_lane`` of them
  from one lane (tenant and host), and one at a time per contact (the claim skips a row
  while another of its contact is in flight, in any worker), so a contact's rows still
  run in order. A lane holds at most ``BACKLOG`` x ``per_lane`` leased rows, the worker
  ``BACKLOG`` x ``threads``; a free thread takes the next row one lane after another in
  turn, so a lane whose host hangs holds its own threads and queue, never anyone else's.
* **Claimed where they are made.** The dispatcher leases the rows its batch queued for
  this pool inside its own transaction and hands them over once it committed
  (``claim_for_dispatch``, ``hand``), so a fresh row costs no claim transaction and waits
  for no poll. The pool's own claim, in the transaction that closes finished rows, takes
  the rest: retries falling due, rows of fired wake-ups, rows another process queued,
  and what a full pool could not take.
* **Local rows on the loop threads.** A lane whose host is our own database (the sandbox
  CRM, ``Connector.concurrency`` 1) never goes to the pool: its rows wait in one queue
  for a loop thread, which runs them one after another, and they close in batches:
  pool threads would only contend for the database. On SQLite one loop thread runs
  them at a time (one writer); on PostgreSQL the decisions loop's thread helps.
* **Assisted (PostgreSQL).** The worker's decisions loop runs a pass itself right after
  each of its own (``assist``), so the rows it just handed over start at once without
  waking the delivery loop's thread, and runs local rows for up to ``ASSIST_FOR``; the
  delivery loop's thread wakes when a pool thread finishes a row. A lock keeps passes
  one at a time.
* **No waiting in the worker.** Connectors built for delivery never sleep on a host's
  Retry-After; a host that fails parks its lane in the database (every worker sees it),
  the row's Retry-After becomes its next attempt time, and the lane's queued rows are
  handed back at once (their lease cleared) for whoever finds the lane open again.
* **Heartbeat.** The loop renews the lease of every row still in flight, every third of
  the lease, so no other worker takes a row however long its host takes, while a killed
  worker's rows are free again within one short lease (``claims.OUTBOX_LEASE``).
* **Closing.** Pool threads only run actions; the loop thread closes what finished
  together, in one transaction with the next claim: at once when a host failed (its
  lane parks before it runs another row), within ``CLOSE_WITHIN`` when a row's effect
  is not idempotent, else in batches of up to ``CLOSE_BATCH`` rows or ``FLUSH_AFTER`` seconds, and at once when
  nothing else runs. A crash re-runs what ran but was not closed yet: the rows in flight,
  as with any concurrent delivery, and those finished within the last ``CLOSE_WITHIN``
  (idempotency keys make that harmless where the host honours them; a webhook receives
  its key in ``Idempotency-Key``). If the joint write fails, the rows are closed one per
  transaction (``OutboxRunner.close``); a row whose close still fails is dropped from the
  heartbeat and re-runs after its lease.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import update
from sqlalchemy.orm import Session

from crm_journeys.runtime import lanes
from crm_journeys.runtime.loops import FIRST_RETRY, LONGEST_RETRY
from crm_journeys.runtime.outbox import FLUSH_AFTER, Claimed, Closing, OutboxRunner, PassCache
from crm_journeys.storage.models import Lane, OutboxMessage

if TYPE_CHECKING:
    from crm_journeys.runtime.services import Runtime

log = logging.getLogger(__name__)
T = TypeVar("T")
THREADS = 16
PER_LANE = 8
BACKLOG = 4  # leased rows per running slot: claims in batches without hoarding
CLOSE_BATCH = 64  # finished rows closed in one transaction
CLOSE_WITHIN = 0.005  # seconds a finished row that is not idempotent waits for others to close with
LOCAL_BATCH = 64  # local rows run on a loop thread per pass
ASSIST_FOR = 0.01  # seconds of local rows the decisions loop runs after a pass of its own
LOCAL_RUNNERS = 2  # loop threads running local rows at once on PostgreSQL (SQLite: 1)
HANDOFF_RACE = 2.0  # seconds rows handed over for a lane this worker just parked go back
CLAIM_EVERY = 0.25  # seconds between claims when nothing asked for one (retries falling due)
CACHE_FOR = 30.0  # seconds a tenant's settings and connector are reused between claims


@dataclass(frozen=True)
class _View:
    """What the pool holds, published by the loop thread after each pass for the
    dispatcher's hand-off on the decisions thread (read without a lock: a stale view
    only makes one claim take a few rows more or less)."""

    count: int = 0
    held: Counter[str] = field(default_factory=Counter)  # leased rows per lane


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
        self.handed: queue.SimpleQueue[list[Claimed]] = queue.SimpleQueue()  # claimed by the dispatcher
        self._parked: dict[str, float] = {}  # lanes this worker parked, until (monotonic)
        self._view = _View()
        self._waiting: list[Closing] = []  # finished, not yet closed
        self._waiting_since = time.monotonic()
        self._claim_wanted = True  # rows may be due that nobody handed us
        self._claimed_at = 0.0
        self.wake = on_done or threading.Event()  # set when a row finishes or rows are handed
        # the decisions loop runs a pass after each of its own (``assist``): handing rows
        # over then wakes nobody, and the loop thread sleeps until a pool thread finishes
        self.assisted = False
        self._pass_lock = threading.Lock()  # one pass at a time, on either thread
        self._assist_failures, self._assist_after = 0, 0.0  # backoff after a failed assisted pass
        self._local: deque[Claimed] = deque()  # local rows taken off their lanes, for a loop thread
        self._local_runners = LOCAL_RUNNERS if runtime.claims.postgres else 1
        self._local_slots = threading.Semaphore(self._local_runners)
        self._cache = PassCache(runtime, delivery=True)
        self._cache_at = time.monotonic()
        self._retired: list[PassCache] = []  # replaced caches, closed once no row runs
        self._renewed = time.monotonic()

    def run_once(self) -> int:
        """Take handed rows, renew leases when due, close what finished and claim more in
        one transaction, run local rows here and fill free threads; how much happened."""
        with self._pass_lock:
            done = self._pass()
        return done + self._run_local()

    def assist(self) -> int:
        """A pass on the caller's thread: the decisions loop's, right after it handed rows
        over (``assisted``). If the loop thread is in a pass, it is asked for another.
        Returns the local rows it ran: what is worth another turn of the decisions loop
        (rows the pool finished or claims are the delivery loop's, which wakes for them;
        counting them would spin the decisions loop on an empty inbox)."""
        if time.monotonic() < self._assist_after or not self._pass_lock.acquire(blocking=False):
            self.wake.set()
            return self._assist_local()
        try:
            self._pass()
        except Exception:
            # the delivery loop retries with its own backoff; this thread waits as long
            self._assist_failures += 1
            self._assist_after = time.monotonic() + min(LONGEST_RETRY, FIRST_RETRY * 2 ** (self._assist_failures - 1))
            log.warning("a delivery pass on the decisions thread failed; the delivery loop retries it",
                        exc_info=self._assist_failures == 1)
            self.wake.set()
            return 0
        finally:
            self._pass_lock.release()
        self._assist_failures = 0
        return self._assist_local()

    def _assist_local(self) -> int:
        """Local rows on the decisions loop's thread too, where two may run at once
        (PostgreSQL); on SQLite they are the delivery loop's alone (one writer: the
        decisions loop would only wait for the lock and its wake-ups with it)."""
        ran = self._run_local(ASSIST_FOR) if self._local_runners > 1 else 0
        if self._local:
            self.wake.set()  # rows left for the delivery loop's thread
        return ran

    def _pass(self) -> int:
        taken = self._take_handed()
        gathered = self._gather_finished()
        self._heartbeat()
        claimed = self._close_and_claim()
        started = self._queue_local() + self._start()
        self._publish()
        return taken + gathered + claimed + started

    def want_claim(self) -> None:
        """Rows may be due that were not handed over (fired wake-ups, a partial hand-off)."""
        self._claim_wanted = True
        if not self.assisted:
            self.wake.set()

    def shutdown(self, wait: float = 10.0) -> None:
        """Stop taking rows, hand back queued ones, let running ones finish (up to ``wait``)
        and close them."""
        self._take_handed()
        local = list(self._local)  # the loops have stopped: nobody takes these any more
        self._local.clear()
        for row in local:
            self.running[row.lane] -= 1
        self._release([row for rows in self.queued.values() for row in rows] + local)
        self.queued.clear()
        deadline = time.monotonic() + wait
        while any(self.running.values()) and time.monotonic() < deadline:
            self.wake.wait(0.05)
            self.wake.clear()
            self._gather_finished()
        self._gather_finished()
        self.runner.close(self._waiting)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self._retired.append(self._cache)
        self._close_retired()

    # --- claiming ---------------------------------------------------------------------
    def claim_for_dispatch(self, session: Session) -> list[Claimed]:
        """On the decisions thread, in the dispatcher's transaction: lease the rows it just
        queued (and any other due ones) for this pool, so they cost no claim transaction of
        their own. ``hand`` them over once that transaction committed."""
        rows = self._claim_in(session, self._view)
        if rows and len(rows) >= self._free(self._view):
            self._claim_wanted = True  # the pool was full: more may be waiting
        return rows

    def hand(self, rows: list[Claimed]) -> None:
        if rows:
            self.handed.put(rows)
            if not self.assisted:
                self.wake.set()

    def _take_handed(self) -> int:
        batches = _drained(self.handed)
        for rows in batches:
            self._enqueue(rows)
        return sum(len(rows) for rows in batches)

    def _enqueue(self, rows: list[Claimed]) -> None:
        """Queue leased rows by lane; rows of a lane this worker just parked (handed over
        by a dispatcher that claimed them before the park) go back at once."""
        now = time.monotonic()
        parked = [row for row in rows if self._parked.get(row.lane, 0.0) > now]
        for row in rows:
            self.inflight[row.id] = row
            if self._parked.get(row.lane, 0.0) <= now:
                self.queued.setdefault(row.lane, deque()).append(row)
        self._release(parked)

    def _free(self, view: _View) -> int:
        return self.threads * BACKLOG - view.count

    def _claim_in(self, session: Session, view: _View) -> list[Claimed]:
        free = self._free(view)
        if free < self.threads and view.count:
            return []  # enough ahead: claim in batches, not a row at a time
        cap = self.per_lane * BACKLOG
        full = {lane for lane, n in view.held.items() if n >= cap}
        budgets: dict[str, Lane] = {}

        def choose(session: Session, rows: list[OutboxMessage]) -> list[OutboxMessage]:
            budgets.update(lanes.budgets(session, self.rt.clock.now(), {r.lane for r in rows},
                                         self.rt.claims.postgres))
            taken = lanes.pick(rows, free, lambda lane: self._room(cap - view.held[lane], budgets.get(lane)))
            for row in taken:
                if row.lane in budgets:
                    budgets[row.lane].used += 1
            return taken

        return self.runner.claim_in(session, free * 2, skip_lanes=full, choose=choose)

    def _publish(self) -> None:
        self._view = _View(len(self.inflight), Counter(row.lane for row in self.inflight.values()))

    @staticmethod
    def _room(room: int, budget: Lane | None) -> int:
        if budget is not None and budget.budget_per_minute is not None:
            room = min(room, budget.budget_per_minute - budget.used)
        return room

    def _queue_local(self) -> int:
        """Rows whose host is our own database (``Connector.concurrency`` 1: the sandbox
        CRM) never go to the pool: up to ``LOCAL_BATCH`` at a time wait for a loop thread
        (``_run_local``). On their own threads they would only contend for the database
        and the GIL, and on SQLite take the write lock from the web app (bench P6: 353
        events/s accepted instead of 500)."""
        cache = self._pass_cache()
        moved = 0
        for lane in [lane for lane, rows in self.queued.items() if rows and self._is_local(rows[0], cache)]:
            rows = self.queued.pop(lane)
            while rows and len(self._local) < LOCAL_BATCH:
                self.running[lane] += 1
                self._local.append(rows.popleft())
                moved += 1
            if rows:
                self.queued[lane] = rows  # the next pass goes on with them, never a thread
        return moved

    def _run_local(self, within: float | None = None) -> int:
        """Run waiting local rows on this loop thread, one after another, outside the pass
        lock: on PostgreSQL the decisions and the delivery loop's threads both may (each
        row is a few round trips to the server, and one thread waiting on them left the
        other idle: bench P5), on SQLite one at a time (one writer). They finish like the
        pool's rows, so the next pass closes them together. The decisions loop runs them
        for at most ``within`` seconds (``ASSIST_FOR``), so wake-ups never wait long."""
        if not self._local or not self._local_slots.acquire(blocking=False):
            return 0
        ran, until = 0, None if within is None else time.monotonic() + within
        try:
            cache = self._cache  # counted as running, so never closed under a row (``_close_retired``)
            while ran < LOCAL_BATCH and (until is None or time.monotonic() < until):
                try:
                    row = self._local.popleft()
                except IndexError:
                    break
                self._deliver(row, cache)
                ran += 1
        finally:
            self._local_slots.release()
        return ran

    def _is_local(self, row: Claimed, cache: PassCache) -> bool:
        host = row.lane.rsplit(":", 1)[-1]
        try:
            if host == "crm" or (host == "smtp" and not cache.settings(row.tenant_id).get("smtp_url")):
                return cache.connector(row.tenant_id).concurrency == 1
        except Exception:  # the row's own run reports settings or a connector it cannot read
            return False  # (on its row, for its tenant only: never a failed pass for everyone)
        return False

    def _start(self) -> int:
        """Free threads take queued rows, one lane after another (a lane served goes to the
        back of the turn), never more than ``per_lane`` running from one lane, never a
        local lane's (``_run_local``)."""
        started = 0
        cache = self._pass_cache()
        while sum(self.running.values()) < self.threads:
            lane = next((lane for lane, rows in self.queued.items()
                         if rows and self.running[lane] < self.per_lane
                         and not self._is_local(rows[0], cache)), None)
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
    def _gather_finished(self) -> int:
        """Move what the pool threads finished into the waiting list."""
        finished = _drained(self.finished)
        for closing in finished:
            self.running[closing.row.lane] -= 1
            if not self._waiting:
                self._waiting_since = time.monotonic()
            self._waiting.append(closing)
        return len(finished)

    def _close_due(self) -> bool:
        """Whether the waiting rows close now (see the module docstring)."""
        if not self._waiting:
            return False
        if (not any(self.running.values()) or len(self._waiting) >= min(CLOSE_BATCH, self.threads)
                or any(c.host_failed for c in self._waiting)):  # park the lane before it runs more
            return True
        waited = time.monotonic() - self._waiting_since
        return waited >= (CLOSE_WITHIN if any(c.at_once for c in self._waiting) else FLUSH_AFTER)

    def _close_and_claim(self) -> int:
        """Close what is due and claim what is wanted, in one transaction: one wait for
        SQLite's write lock instead of two. If the joint write fails, the rows are closed
        the safe way (``OutboxRunner.close``: one per transaction when together fails) and
        the claim waits for the next pass. Returns how many rows were claimed."""
        closing = self._waiting if self._close_due() else []
        claim = self._claim_wanted or time.monotonic() - self._claimed_at >= CLAIM_EVERY
        if not closing and not claim:
            return 0
        self._waiting = [] if closing else self._waiting
        if closing:
            self._claim_wanted = True  # a contact's next row may be claimable now
        rows: list[Claimed] = []
        try:
            with self.rt.db.unit_of_work() as s:
                self.runner.write_in(s, closing)
                if claim:
                    rows = self._claim_in(s, self._current_view())
        except Exception:
            log.warning("closing %d rows and claiming failed together; closing them alone",
                        len(closing), exc_info=True)
            rows = []
            self._close_alone(closing)
        else:
            if claim:
                self._claim_wanted, self._claimed_at = False, time.monotonic()
        self._closed(closing)
        self._enqueue(rows)
        self._close_retired()
        return len(rows)

    def _current_view(self) -> _View:
        self._publish()
        return self._view

    def _close_alone(self, closing: list[Closing]) -> None:
        try:
            self.runner.close(list(closing))
        except Exception:
            log.exception("closing %d delivered outbox rows failed; they re-run after their lease",
                          len(closing))

    def _closed(self, done: list[Closing]) -> None:
        for closing in done:
            self.inflight.pop(closing.row.id, None)
        failed = {c.row.lane: c.host_failed for c in done if c.host_failed}
        for lane, (retry_after, _) in failed.items():
            # long enough for a hand-off claimed before the park to arrive; the park
            # itself is in the database (a retry by hand lifts it there at once)
            self._parked[lane] = time.monotonic() + min(HANDOFF_RACE, retry_after or HANDOFF_RACE)
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


def _drained(waiting: queue.SimpleQueue[T]) -> list[T]:
    """Everything in ``waiting`` now, without waiting for more."""
    out: list[T] = []
    while True:
        try:
            out.append(waiting.get_nowait())
        except queue.Empty:
            return out

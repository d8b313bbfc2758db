"""Group commit: requests that arrive while a batch is being written wait, then go together
in the next batch, so one transaction serves many requests and each is answered only
after the batch holding it has run (committed, for the caller's ``run``).

There is no thread of its own and no timer. A request that finds nobody writing leads at
once with whatever is waiting (alone, at low load: no added latency); one that finds a
batch under way waits for it to end, and the first waiter then leads the next batch. The
batch grows with the load, which is when sharing a transaction pays. Knows nothing of
HTTP or databases.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    """One submitted item and, once its batch has run, its outcome."""

    __slots__ = ("item", "done", "outcome")

    def __init__(self, item: T):
        self.item = item
        self.done = False
        self.outcome: R | BaseException | None = None


class GroupCommit(Generic[T, R]):
    """Runs submitted items in batches through ``run``.

    ``run(items)`` returns one outcome per item, in order: a result, or an exception that
    ``submit`` raises in that item's thread. An exception escaping ``run`` itself becomes
    every item's outcome, so no waiter is left hanging.

    ``on_idle`` is called when a batch ends and nobody waits, before the next batch can
    start: what consecutive batches share (a database connection) is let go there, and
    kept while the load lasts.
    """

    def __init__(self, run: Callable[[list[T]], list[R | BaseException]], max_batch: int = 200,
                 on_idle: Callable[[], None] | None = None):
        self._run = run
        self._max_batch = max_batch
        self._on_idle = on_idle
        self._cond = threading.Condition()
        self._waiting: list[_Slot[T, R]] = []
        self._leading = False

    def submit(self, item: T) -> R:
        """``item``'s result once its batch has run (raises its error)."""
        slot: _Slot[T, R] = _Slot(item)
        with self._cond:
            self._waiting.append(slot)
        while not slot.done:  # more than once only when a capped batch left ours waiting
            with self._cond:
                while self._leading and not slot.done:
                    self._cond.wait()
                batch = None if slot.done else self._take()
            if batch is not None:
                self._lead(batch)
        if isinstance(slot.outcome, BaseException):
            raise slot.outcome
        return slot.outcome  # type: ignore[return-value]

    def _take(self) -> list[_Slot[T, R]]:
        """Become the leader of what is waiting (called under the lock)."""
        self._leading = True
        batch, self._waiting = self._waiting[:self._max_batch], self._waiting[self._max_batch:]
        return batch

    def _lead(self, batch: list[_Slot[T, R]]) -> None:
        """Run ``batch`` outside the lock, publish the outcomes, wake the waiters."""
        outcomes: list[R | BaseException]
        try:
            outcomes = self._run([s.item for s in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"run gave {len(outcomes)} outcomes for {len(batch)} items")
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter, not swallowed
            outcomes = [exc] * len(batch)
        with self._cond:
            for slot, outcome in zip(batch, outcomes, strict=True):
                slot.outcome, slot.done = outcome, True
            idle = self._on_idle is not None and not self._waiting
            self._leading = idle  # still leading through on_idle: no batch starts meanwhile
            self._cond.notify_all()
        if idle:
            self._idle()

    def _idle(self) -> None:
        """``on_idle``, then give up leading. Its failure is logged, not raised: the
        leader's own item is already answered and must not turn into an error."""
        try:
            self._on_idle()  # type: ignore[misc]
        except Exception:  # noqa: BLE001
            logger.exception("group commit: on_idle failed")
        finally:
            with self._cond:
                self._leading = False
                self._cond.notify_all()

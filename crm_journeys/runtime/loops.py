"""One worker loop that survives: any failure is logged and retried with backoff, the loop
never dies, and it records when it last got through a pass (``/healthz``).

Under a steady stream a loop would run a pass for every one or two items, and a pass
costs more than an item (its transaction, its claims, its queries), so a loop may
``linger`` after a busy pass, waiting a few milliseconds before the next to let the next
batch gather (``lingering`` says how long).

Between passes it waits on its ``wake`` event (set by whoever just queued work for it: the
events API in the same process, a PostgreSQL NOTIFY, the decisions loop for delivery),
and otherwise polls, as a safety net, at an adaptive interval: ``min_wait`` right after
it found work, doubling on every idle pass up to ``max_wait``. A worker in its own
process on SQLite (where nothing pushes) therefore polls often while traffic flows and
rarely when it does not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)
FIRST_RETRY, LONGEST_RETRY = 0.5, 30.0  # seconds after a failed pass, doubling per failure
LINGER_FULL_AT = 8  # items a pass found for the whole linger; fewer wait in proportion


@dataclass
class Loop:
    name: str
    work: Callable[[], int]  # one pass; returns how much work it found
    stop: threading.Event
    wake: threading.Event = field(default_factory=threading.Event)
    min_wait: float = 0.005
    max_wait: float = 0.5
    until_due: Callable[[], float | None] | None = None  # seconds until known work (a wake-up)
    stale_after: float = 60.0  # seconds without a good pass before /healthz calls it stalled
    linger: Callable[[], float] | None = None  # seconds to wait after a busy pass (``lingering``)
    last_pass: float = field(default_factory=time.monotonic)
    failures: int = 0
    last_error: str = ""

    def run(self) -> None:
        log.info("worker loop %s started", self.name, extra={"loop": self.name})
        idle = self.min_wait
        while not self.stop.is_set():
            busy = self._pass()
            if busy is None:  # failed: back off, then try again
                self.stop.wait(min(LONGEST_RETRY, FIRST_RETRY * 2 ** (self.failures - 1)))
                continue
            if busy:
                idle = self.min_wait
                pause = self.linger() if self.linger is not None else 0.0
                if pause > 0:  # let the next batch gather
                    self.stop.wait(pause)
                continue
            self.wake.wait(self._timeout(idle))
            self.wake.clear()
            idle = min(self.max_wait, idle * 2)
        log.info("worker loop %s stopped", self.name, extra={"loop": self.name})

    def _pass(self) -> int | None:
        try:
            busy = self.work()
        except Exception as exc:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
            log.exception("worker loop %s failed (%d in a row); retrying", self.name, self.failures,
                          extra={"loop": self.name})
            return None
        if self.failures:
            log.info("worker loop %s recovered after %d failed passes", self.name, self.failures,
                     extra={"loop": self.name})
        self.failures, self.last_error = 0, ""
        self.last_pass = time.monotonic()
        return busy

    def _timeout(self, idle: float) -> float:
        """The adaptive poll interval, never past the next known due time."""
        if self.until_due is None or idle <= 0.02:
            return idle
        try:
            due = self.until_due()
        except Exception:  # the next pass reports it; waiting the interval is safe
            return idle
        return idle if due is None else max(0.0, min(idle, due))

    def health(self) -> dict[str, object]:
        age = time.monotonic() - self.last_pass
        return {"seconds_since_pass": round(age, 3), "stale": age > self.stale_after,
                "failures": self.failures, "last_error": self.last_error}


def lingering(found: int, full: int, longest: float) -> float:
    """How long to let a batch gather after a pass that found ``found`` items: not at all
    for one (light load: latency is not spent on it) or for a ``full`` batch (a backlog
    goes on at once), else in proportion to what came, up to ``longest``."""
    if found <= 1 or found >= full:
        return 0.0
    return min(longest, found * longest / LINGER_FULL_AT)

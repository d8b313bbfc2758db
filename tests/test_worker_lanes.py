"""A running worker (its real loops, a real clock) that no tenant can stall.

Two tenants call webhooks on real loopback HTTP servers. Tenant A's host hangs, answers
503, or 429 with Retry-After; tenant B's actions are delivered meanwhile, A's host parks
A's lane (every worker sees it in ``cj_lane``) instead of holding threads, and nothing is
lost or sent twice once A's host is back. A second worker running beside the first never
takes a row the first is still delivering (the heartbeat renews its lease).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select, update

from crm_journeys.clock import Clock
from crm_journeys.runtime.worker import Worker
from crm_journeys.storage.models import Lane, OutboxMessage, Tenant
from tests.conftest import Harness


class Host:
    """A webhook receiver on loopback: answers 200, hangs until released, 503, or 429."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.retry_after = "120"
        self.release = threading.Event()
        self.keys: list[str] = []
        self.lock = threading.Lock()
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with host.lock:
                    host.keys.append(self.headers["Idempotency-Key"])
                if host.mode == "hang":
                    host.release.wait(60)
                status = {"ok": 200, "hang": 200, "503": 503, "429": 429}[host.mode]
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", host.retry_after)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/in"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hosts() -> Iterator[tuple[Host, Host]]:
    a, b = Host(), Host()
    yield a, b
    a.close()
    b.close()


def _tenant(db: Any, url: str) -> Harness:
    h = Harness(db, Clock())  # type: ignore[arg-type] # a real clock: the loops run in real time
    with db.unit_of_work() as s:
        s.execute(update(Tenant).where(Tenant.id == h.tenant_id).values(settings={"allow_private_webhooks": True}))
    h.publish({"format_version": 1, "name": "Hook", "entry": {"policy": "every_time"},
               "starting_points": [{"id": "f", "type": "form_submitted", "params": {"form": "x"}}],
               "first_step": "hook",
               "steps": [{"id": "hook", "type": "action", "action": "call_webhook", "next": None,
                          "params": {"url": url, "timeout_seconds": 20}}]})
    return h


@pytest.fixture
def start_worker(sqlite_db: Any) -> Iterator[Callable[..., Worker]]:
    started: list[tuple[Worker, threading.Thread]] = []

    def start(name: str = "w1", **options: Any) -> Worker:
        from crm_journeys.runtime.services import Runtime

        runtime = Runtime(db=sqlite_db)
        if "outbox_lease" in options:
            runtime.claims.outbox_lease = timedelta(seconds=options.pop("outbox_lease"))
        worker = Worker(runtime, worker_id=name, idle_sleep=0.1, **options)
        thread = threading.Thread(target=worker.run_forever, daemon=True)
        thread.start()
        started.append((worker, thread))
        return worker

    yield start
    for worker, thread in started:
        worker.stop()
        thread.join(timeout=30)


def _until(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _rows(db: Any, tenant_id: int) -> list[OutboxMessage]:
    with db.unit_of_work() as s:
        return list(s.scalars(select(OutboxMessage).where(OutboxMessage.tenant_id == tenant_id)
                              .order_by(OutboxMessage.id)))


def _send(h: Harness, n: int, prefix: str) -> None:
    for i in range(n):
        h.event("form_submitted", f"{prefix}{i}@example.com", key="x")


def test_a_hanging_host_does_not_hold_back_another_tenant(sqlite_db, hosts, start_worker) -> None:
    host_a, host_b = hosts
    host_a.mode = "hang"
    a, b = _tenant(sqlite_db, host_a.url), _tenant(sqlite_db, host_b.url)
    start_worker()
    _send(a, 6, "a")
    assert _until(lambda: len(host_a.keys) >= 1)  # A's host now holds its requests
    _send(b, 5, "b")
    assert _until(lambda: len(set(host_b.keys)) == 5), host_b.keys
    assert not host_a.release.is_set()  # ...while A's host still has not answered
    assert all(r.status == "done" for r in _rows(sqlite_db, b.tenant_id))
    assert len(host_a.keys) <= 4  # A gets its lane's share of the pool, not all of it

    host_a.release.set()
    host_a.mode = "ok"
    assert _until(lambda: all(r.status == "done" for r in _rows(sqlite_db, a.tenant_id)))
    assert len(host_a.keys) == len(set(host_a.keys)) == 6  # each once


def test_429_parks_the_lane_until_retry_after(sqlite_db, hosts, start_worker) -> None:
    host_a, host_b = hosts
    host_a.mode, host_a.retry_after = "429", "120"
    a, b = _tenant(sqlite_db, host_a.url), _tenant(sqlite_db, host_b.url)
    start_worker(threads=4, per_lane=2)
    _send(a, 6, "a")
    _send(b, 3, "b")
    assert _until(lambda: len(set(host_b.keys)) == 3)
    assert _until(lambda: any(r.attempts for r in _rows(sqlite_db, a.tenant_id)))
    time.sleep(0.5)  # the worker keeps running: A's other rows stay untouched
    rows = _rows(sqlite_db, a.tenant_id)
    tried = [r for r in rows if r.attempts]
    assert 1 <= len(tried) <= 2 and len(host_a.keys) == len(tried)
    for row in tried:  # Retry-After became the row's next attempt, no worker slept on it
        assert row.status == "pending" and "429" in row.last_error
        assert timedelta(seconds=100) < row.next_attempt_at - row.created_at < timedelta(seconds=140)
    with sqlite_db.unit_of_work() as s:
        lane = s.get(Lane, f"{a.tenant_id}:127.0.0.1")
        assert lane is not None and lane.failures >= 1
        assert lane.parked_until is not None and lane.parked_until > Clock().now() + timedelta(seconds=100)


def test_503_parks_the_lane_briefly_and_delivery_resumes(sqlite_db, hosts, start_worker) -> None:
    host_a, _ = hosts
    host_a.mode = "503"
    a = _tenant(sqlite_db, host_a.url)
    start_worker(threads=2, per_lane=1)
    _send(a, 3, "a")
    assert _until(lambda: len(host_a.keys) >= 1)
    with sqlite_db.unit_of_work() as s:  # the host is back; the rows' own backoff is long
        assert _until(lambda: s.get(Lane, f"{a.tenant_id}:127.0.0.1", populate_existing=True) is not None)
    host_a.mode = "ok"
    with sqlite_db.unit_of_work() as s:
        s.execute(update(OutboxMessage).where(OutboxMessage.tenant_id == a.tenant_id)
                  .values(next_attempt_at=Clock().now()))
    assert _until(lambda: all(r.status == "done" for r in _rows(sqlite_db, a.tenant_id)))
    with sqlite_db.unit_of_work() as s:  # the first success cleared the lane
        lane = s.get(Lane, f"{a.tenant_id}:127.0.0.1")
        assert lane is not None and lane.failures == 0 and lane.parked_until is None
    assert len(set(host_a.keys)) == 3


def test_a_second_worker_never_takes_a_row_still_being_delivered(sqlite_db, hosts, start_worker) -> None:
    host_a, _ = hosts
    host_a.mode = "hang"
    a = _tenant(sqlite_db, host_a.url)
    start_worker("w1", outbox_lease=1.5)
    _send(a, 2, "a")
    assert _until(lambda: len(host_a.keys) == 2)
    start_worker("w2", outbox_lease=1.5)
    time.sleep(4.0)  # well past the lease: only the heartbeat keeps the rows w1's
    assert len(host_a.keys) == 2
    with sqlite_db.unit_of_work() as s:
        claimed = s.scalars(select(OutboxMessage.claimed_by).where(OutboxMessage.tenant_id == a.tenant_id))
        assert set(claimed) == {"w1"}
    host_a.release.set()
    host_a.mode = "ok"
    assert _until(lambda: all(r.status == "done" for r in _rows(sqlite_db, a.tenant_id)))
    assert len(host_a.keys) == 2

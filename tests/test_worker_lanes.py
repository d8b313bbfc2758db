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
    """A webhook receiver on loopback: answers 200, hangs until released, 503, or 429;
    with ``keep_alive`` it speaks HTTP/1.1 and keeps connections open. It notes each
    request's idempotency key and client socket."""

    def __init__(self, keep_alive: bool = False) -> None:
        self.mode = "ok"
        self.retry_after = "120"
        self.release = threading.Event()
        self.keys: list[str] = []
        self.sockets: set[tuple[str, int]] = set()
        self.lock = threading.Lock()
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with host.lock:
                    host.keys.append(self.headers["Idempotency-Key"])
                    host.sockets.add(self.client_address)
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
                          "params": {"url": url, "timeout_seconds": 30}}]})
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


def _until(condition: Callable[[], bool], seconds: float = 90.0) -> bool:
    """Polls ``condition``; generous, for a loaded machine (a condition that never holds
    still fails the test, only later)."""
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


def _lane(db: Any, key: str) -> Lane | None:
    """The lane as the database has it now (a read: polling must not hold the write lock
    the worker needs to park it)."""
    with db.reading() as s:
        return s.get(Lane, key)


def _send(h: Harness, n: int, prefix: str) -> None:
    for i in range(n):
        h.event("form_submitted", f"{prefix}{i}@example.com", key="x")


def test_a_hanging_host_does_not_hold_back_another_tenant(sqlite_db, hosts, start_worker) -> None:
    host_a, host_b = hosts
    host_a.mode = "hang"
    a, b = _tenant(sqlite_db, host_a.url), _tenant(sqlite_db, host_b.url)
    start_worker(threads=4, per_lane=2)
    _send(a, 6, "a")
    assert _until(lambda: len(host_a.keys) >= 1)  # A's host now holds its requests
    _send(b, 5, "b")
    assert _until(lambda: len(set(host_b.keys)) == 5), host_b.keys
    assert not host_a.release.is_set()  # ...while A's host still has not answered
    assert all(r.status == "done" for r in _rows(sqlite_db, b.tenant_id))
    assert len(host_a.keys) <= 2  # A gets its lane's share of the pool, not all of it

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
    assert _until(lambda: _lane(sqlite_db, f"{a.tenant_id}:127.0.0.1") is not None)  # parked
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


def _rename(db: Any, old: str, new: str) -> None:
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {old} RENAME TO {new}")


def test_a_worker_whose_database_raises_keeps_running_and_recovers(sqlite_db, hosts, start_worker) -> None:
    _, host_b = hosts
    b = _tenant(sqlite_db, host_b.url)
    worker = start_worker()
    assert _until(lambda: "decisions" in worker.loops)
    _rename(sqlite_db, "cj_inbox", "cj_inbox_away")  # every decisions pass now fails
    assert _until(lambda: worker.loops["decisions"].failures >= 2)
    assert "cj_inbox" in worker.loops["decisions"].last_error
    assert worker.loops["delivery"].failures == 0  # the other loops carry on
    _rename(sqlite_db, "cj_inbox_away", "cj_inbox")
    _send(b, 2, "b")
    assert _until(lambda: len(set(host_b.keys)) == 2)
    assert worker.loops["decisions"].failures == 0


def test_healthz_answers_503_while_a_worker_loop_is_stalled(sqlite_db, tmp_path) -> None:
    from crm_journeys.app import create_app

    app = create_app({"TESTING": True, "CRM_JOURNEYS_DATABASE_URL": sqlite_db.url,
                      "CRM_JOURNEYS_RUN_WORKER": True})
    st = app.extensions["crm_journeys"]
    client = app.test_client()
    try:
        assert _until(lambda: "decisions" in st.worker.loops)
        ok = client.get("/healthz")
        assert ok.status_code == 200 and ok.json["status"] == "ok"
        assert set(ok.json["loops"]) == {"decisions", "delivery", "upkeep"}
        assert ok.json["loops"]["decisions"]["seconds_since_pass"] < 60
        st.worker.loops["decisions"].stale_after = 1.0
        _rename(sqlite_db, "cj_wakeup", "cj_wakeup_away")
        assert _until(lambda: client.get("/healthz").status_code == 503)
        stalled = client.get("/healthz").json
        assert stalled["status"] == "stalled" and "worker loop decisions stalled" in stalled["problems"]
        assert stalled["loops"]["decisions"]["seconds_since_pass"] > 1.0
        _rename(sqlite_db, "cj_wakeup_away", "cj_wakeup")
        assert _until(lambda: client.get("/healthz").status_code == 200)
    finally:
        st.stop_worker()


FAMILIES = ("crm_journeys_inbox_backlog", "crm_journeys_inbox_oldest_age_seconds", "crm_journeys_outbox_rows",
            "crm_journeys_wakeup_lateness_seconds", "crm_journeys_decisions_total",
            "crm_journeys_host_requests_total", "crm_journeys_host_rate_limited_total",
            "crm_journeys_open_circuits", "crm_journeys_lane_parked", "crm_journeys_lane_budget_left",
            "crm_journeys_deliveries_total")


def test_metrics_lists_backlog_outbox_hosts_and_lanes(sqlite_db, hosts, start_worker) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from crm_journeys.app import create_app

    host_a, host_b = hosts
    host_a.mode = "429"
    a, b = _tenant(sqlite_db, host_a.url), _tenant(sqlite_db, host_b.url)
    start_worker(threads=2, per_lane=1)
    _send(a, 2, "a")
    _send(b, 1, "b")
    assert _until(lambda: host_b.keys and host_a.keys)
    with sqlite_db.unit_of_work() as s:  # a budget, and a lane that is parked by the 429
        from crm_journeys.runtime.lanes import set_budget

        set_budget(s, f"{b.tenant_id}:127.0.0.1", 100)
    assert _until(lambda: any(r.attempts for r in _rows(sqlite_db, a.tenant_id)))
    app = create_app({"TESTING": True, "CRM_JOURNEYS_DATABASE_URL": sqlite_db.url})
    answer = app.test_client().get("/metrics")
    assert answer.status_code == 200 and answer.content_type.startswith("text/plain")
    text = answer.get_data(as_text=True)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    names = {name for name, _ in samples}
    for family in FAMILIES:
        assert any(n == family or n.startswith(family + "_") for n in names), family
    port = host_a.server.server_address[1]
    assert samples[("crm_journeys_host_rate_limited_total", (("host", f"127.0.0.1:{port}"),))] >= 1
    assert samples[("crm_journeys_outbox_rows", (("action", "call_webhook"), ("state", "retrying")))] >= 1
    assert samples[("crm_journeys_lane_parked", (("lane", f"{a.tenant_id}:127.0.0.1"),))] == 1
    assert samples[("crm_journeys_lane_budget_left", (("lane", f"{b.tenant_id}:127.0.0.1"),))] == 100
    assert samples[("crm_journeys_open_circuits", ())] >= 1


def test_a_killed_workers_rows_are_delivered_by_another_with_the_same_key(sqlite_db, hosts, start_worker) -> None:
    import os
    import signal
    import subprocess
    import sys

    host_a, _ = hosts
    host_a.mode = "hang"
    a = _tenant(sqlite_db, host_a.url)
    code = ("import sys; from crm_journeys.runtime.worker import run_worker; "
            "run_worker(sys.argv[1], 'victim', lease_seconds=2)")
    victim = subprocess.Popen([sys.executable, "-c", code, sqlite_db.url])
    try:
        _send(a, 1, "a")
        assert _until(lambda: len(host_a.keys) == 1)  # the victim is delivering it...
        os.kill(victim.pid, signal.SIGKILL)  # ...and dies before it can close the row
        victim.wait(10)
    finally:
        if victim.poll() is None:
            victim.kill()
    host_a.mode = "ok"
    host_a.release.set()
    start_worker("w2", outbox_lease=2)
    assert _until(lambda: all(r.status == "done" for r in _rows(sqlite_db, a.tenant_id)))
    [row] = _rows(sqlite_db, a.tenant_id)
    assert row.claimed_by == "w2" and row.attempts == 1
    assert len(host_a.keys) == 2 and len(set(host_a.keys)) == 1  # re-sent once, same idempotency key


def test_a_worker_process_serves_its_own_metrics_and_health(sqlite_db, start_worker) -> None:
    import requests

    from crm_journeys.runtime.status_server import serve_status

    worker = start_worker()
    assert _until(lambda: "decisions" in worker.loops)
    server = serve_status(worker, 0)
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        health = requests.get(f"{base}/healthz", timeout=10)
        assert health.status_code == 200 and set(health.json()["loops"]) == {"decisions", "delivery", "upkeep"}
        assert "crm_journeys_inbox_backlog 0.0" in requests.get(f"{base}/metrics", timeout=10).text
        worker.loops["delivery"].stale_after = 0.0  # as if the loop had not passed for ages
        stalled = requests.get(f"{base}/healthz", timeout=10)
        assert stalled.status_code == 503 and "worker loop delivery stalled" in stalled.json()["problems"]
    finally:
        server.shutdown()


def test_a_replaced_pass_cache_is_closed_only_when_no_row_runs(harness) -> None:
    """Every ``CACHE_FOR`` seconds the pool takes fresh tenant settings; the SMTP
    connections the old cache holds are closed (not left to the garbage collector), but
    never while a thread may still be sending through them."""
    from crm_journeys.runtime import delivery as delivery_module

    class Connection:
        closed = 0

        def close(self) -> None:
            self.closed += 1

    pool = delivery_module.Delivery(harness.runtime, "w-cache", threads=2)
    try:
        old = pool._pass_cache()
        connection = old.shared["smtp"] = Connection()
        pool._cache_at -= delivery_module.CACHE_FOR + 1
        assert pool._pass_cache() is not old
        pool.running["1:smtp"] = 1  # a row still sending through the old cache
        pool._close_retired()
        assert connection.closed == 0
        pool.running["1:smtp"] = 0
        pool._close_retired()
        assert connection.closed == 1
    finally:
        pool.shutdown(wait=0)

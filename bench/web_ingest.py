"""The web process's CPU per ``POST /api/events`` request, against a trivial route on the
same server: what our own code (token, validation, ingest, commit) costs over Flask and
waitress.

``python -m bench.web_ingest [N] [CONNECTIONS]`` starts the real app on waitress in a child
process (``bench/p6_server.py``'s server, plus a ``POST /bench/noop`` route answering 202),
sends N requests per round over keep-alive loopback connections from this process and reads
the child's CPU time (utime + stime, ``/proc/<pid>/stat``) before and after. CPU time, not
wall time: other processes on the machine slow a run down but change the CPU it takes far
less. Each round sends to both routes, with 1 connection (one request at a time: nothing to
group-commit) and with CONNECTIONS (default 4) at once; the median and the minimum of 5
rounds are reported, with the p50 wall time of a request. SQLite and, when a server answers, PostgreSQL.

``python -m bench.web_ingest serve FOLDER DATABASE_URL`` is the child.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import percentile, postgres_available, postgres_url
from bench.p6_load import Connection
from bench.p6_run import _python, _wait_for, cpu_seconds, setup

REQUESTS = 3000
CONNECTIONS = 4  # the busy case; every figure is also taken with 1 connection (no batching)
ROUNDS = 5
WARMUP = 300
NOOP = "/bench/noop"


def serve(folder: str, url: str) -> None:
    """The child: the real app (as ``bench.p6_server`` builds it) plus the trivial route."""
    import signal

    from flask import jsonify

    from bench.p6_server import _stop, serve_waitress
    from crm_journeys.app import create_app

    app = create_app({"CRM_JOURNEYS_DATABASE_URL": url, "CRM_JOURNEYS_AUTO_MIGRATE": False,
                      "SECRET_KEY": "bench"})
    app.add_url_rule(NOOP, "bench_noop", lambda: (jsonify({"accepted": True}), 202), methods=["POST"])
    signal.signal(signal.SIGTERM, _stop)
    try:
        serve_waitress(app, Path(folder) / "port")
    finally:
        app.extensions["crm_journeys"].db.dispose()


def event_body(i: int) -> str:
    """A ``subscribed`` event for a new contact with its own id (each one is new)."""
    return json.dumps({"type": "subscribed", "key": "newsletter", "id": f"wi:{i}",
                       "contact": {"email": f"wi{i}@example.com"}, "properties": {"list": "newsletter"}})


def connection(port: int, token: str, path: str) -> Connection:
    """P6's keep-alive connection (plain sockets, cheap on the sender), aimed at ``path``."""
    conn = Connection(port, token)
    conn.head = conn.head.replace("/api/events", path, 1)
    return conn


@dataclass
class Sent:
    """What one burst of requests got back."""

    failed: int = 0
    ms: list[float] = field(default_factory=list)  # wall time of each exchange


def fire(port: int, token: str, path: str, bodies: list[str], connections: int) -> Sent:
    """Send ``bodies`` to ``path`` over ``connections`` keep-alive connections at full speed
    (each sends its next request when the answer to the last one is in)."""
    per_conn = [Sent() for _ in range(connections)]

    def sender(k: int) -> None:
        conn, sent = connection(port, token, path), per_conn[k]
        for body in bodies[k::connections]:
            t0 = time.perf_counter()
            try:
                sent.failed += conn.post(body) != 202
            except OSError:
                sent.failed += 1
            sent.ms.append((time.perf_counter() - t0) * 1000)
        conn.close()

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Sent(sum(s.failed for s in per_conn), [ms for s in per_conn for ms in s.ms])


def cpu_ms_per_request(pid: int, send: Callable[[], Sent], n: int) -> tuple[float, Sent]:
    """The server's CPU milliseconds per request while ``send`` runs (failures are an error)."""
    before = cpu_seconds(pid)
    sent = send()
    after = cpu_seconds(pid)
    if sent.failed:
        raise RuntimeError(f"{sent.failed} of {n} requests were not answered 202")
    return (after - before) * 1000 / n, sent


@contextmanager
def server(url: str) -> Iterator[tuple[int, int]]:
    """The child server running on ``url``: (pid, port)."""
    with tempfile.TemporaryDirectory(prefix="cj-web-ingest-") as tmp:
        folder = Path(tmp)
        proc = _python("bench.web_ingest", "serve", str(folder), url, folder=folder)
        try:
            _wait_for(folder / "port", proc)
            yield proc.pid, int((folder / "port").read_text())
        finally:
            proc.terminate()
            proc.wait(60)


@dataclass
class Rounds:
    """CPU ms per request of each round, for events and the trivial route, at one concurrency."""

    connections: int
    events: list[float] = field(default_factory=list)
    noop: list[float] = field(default_factory=list)
    events_wall_ms: list[float] = field(default_factory=list)
    noop_wall_ms: list[float] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """Medians, and minimums: what the rest of the machine does only ever adds CPU time
        (cache and core sharing), so the least disturbed round is the closest to the cost."""
        ev, base = statistics.median(self.events), statistics.median(self.noop)
        return {"connections": self.connections, "events_cpu_ms": round(ev, 3), "noop_cpu_ms": round(base, 3),
                "ratio": round(ev / base, 2), "over_framework_ms": round(ev - base, 3),
                "events_cpu_ms_min": round(min(self.events), 3), "noop_cpu_ms_min": round(min(self.noop), 3),
                "events_p50_ms": round(percentile(self.events_wall_ms, 50), 2),
                "noop_p50_ms": round(percentile(self.noop_wall_ms, 50), 2),
                "rounds_events": [round(x, 3) for x in self.events], "rounds_noop": [round(x, 3) for x in self.noop]}


def measure(url: str, n: int = REQUESTS, concurrency: tuple[int, ...] = (1, CONNECTIONS)) -> list[dict[str, Any]]:
    """For each concurrency: median CPU ms per request of events and of the trivial route
    over ROUNDS rounds, the two routes alternating (what the rest of the machine does then
    weighs on both alike)."""
    token = setup(url)
    results = [Rounds(c) for c in concurrency]
    with server(url) as (pid, port):
        fire(port, token, "/api/events", [event_body(-i - 1) for i in range(WARMUP)], CONNECTIONS)
        fire(port, token, NOOP, ["{}"] * WARMUP, CONNECTIONS)
        serial = 0
        for _ in range(ROUNDS):
            for rounds in results:
                bodies = [event_body(serial + i) for i in range(n)]
                serial += n
                cpu, sent = cpu_ms_per_request(pid, partial(fire, port, token, "/api/events", bodies,
                                                            rounds.connections), n)
                rounds.events.append(cpu)
                rounds.events_wall_ms += sent.ms
                cpu, sent = cpu_ms_per_request(pid, partial(fire, port, token, NOOP, ["{}"] * n,
                                                            rounds.connections), n)
                rounds.noop.append(cpu)
                rounds.noop_wall_ms += sent.ms
    return [r.report() for r in results]


def main(argv: list[str]) -> None:
    if argv[:1] == ["serve"]:
        serve(argv[1], argv[2])
        return
    n = int(argv[0]) if argv else REQUESTS
    concurrency = (1, int(argv[1])) if len(argv) > 1 else (1, CONNECTIONS)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cj-web-ingest-db-") as tmp:
        results["sqlite"] = measure(f"sqlite:///{Path(tmp) / 'bench.db'}", n, concurrency)
    if postgres_available():
        with postgres_url() as url:
            results["postgresql"] = measure(url, n, concurrency)
    for name, reports in results.items():
        for r in reports:
            print(f"{name:10s} {r['connections']} conn: events {r['events_cpu_ms']:.3f} ms CPU/request "
                  f"(min {r['events_cpu_ms_min']:.3f}, p50 wall {r['events_p50_ms']:.2f} ms), trivial route "
                  f"{r['noop_cpu_ms']:.3f} ms (min {r['noop_cpu_ms_min']:.3f}, p50 wall {r['noop_p50_ms']:.2f} ms), "
                  f"ratio {r['ratio']:.2f}, ours {r['over_framework_ms']:.3f} ms")
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1:])

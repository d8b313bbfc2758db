"""P7 and P8: a worker no tenant can stall, and how fast a light load gets through.

Both run as deployed, in their own processes on loopback: the web app (``bench/p6_server``:
``POST /api/events`` on waitress), ``crm-journeys worker`` with its defaults (a real CLI
process, SQLite, no options), and this process, which sends the events (keep-alive
sockets, ``bench/p6_load``'s ``Connection``) and plays the CRMs: stand-in HTTP hosts that
note when each contact's request arrives. Each tenant's journey is "signed up -> call
webhook" to its own host, so an event's latency is the host's arrival stamp minus the
sender's stamp (``time.time()`` on one machine).

* **P7, noisy neighbour**: tenant B sends at a steady rate, first alone, then while
  tenant A sends at the same rate to a host that hangs, then answers 503, then 429 with
  Retry-After. Goal: B's p99 with A misbehaving <= 2 x B's p99 alone + 1 s.
* **P8, latency and burst**: 50 events/s for one tenant (goal p50 <= 15 ms, p99 <= 100 ms
  from the POST to the CRM request), then a burst of 2,000 events sent as fast as the web
  app takes them (goal: all delivered at >= 90 % of the rate the web app accepted them).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench import workload
from bench.common import percentile
from bench.p6_load import Connection
from crm_journeys.secrets import forget_keys
from crm_journeys.storage.db import Database

ROOT = Path(__file__).resolve().parent.parent
SENDERS = 8


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A caller that gave up on a hanging answer (its timeout) is expected here."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class StandIn:
    """A CRM stand-in on loopback (HTTP/1.1 keep-alive): ``ok``, ``hang`` (holds each
    request until the run ends), ``503``, or ``429`` with ``Retry-After: 30``."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.arrived: dict[str, float] = {}
        self.requests = 0
        self.release = threading.Event()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # one answer, not a header packet waiting on an ACK

            def do_POST(self) -> None:  # noqa: N802
                at = time.time()
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                stand_in.requests += 1
                mode = stand_in.mode
                if mode == "hang":
                    stand_in.release.wait(120)
                status = {"ok": 200, "hang": 200, "503": 503, "429": 429}[mode]
                if status == 200:
                    stand_in.arrived.setdefault(str(body.get("contact", {}).get("email")), at)
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "30")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/crm"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _journey(url: str) -> dict[str, Any]:
    return {"format_version": 1, "name": "Signed up -> CRM", "entry": {"policy": "every_time"},
            "starting_points": [{"id": "s", "type": "signup", "params": {"list": "newsletter"}}],
            "first_step": "crm",
            "steps": [{"id": "crm", "type": "action", "action": "call_webhook", "next": None,
                       "params": {"url": url, "timeout_seconds": 10}}]}


def _tenant(url: str, host: StandIn) -> str:
    """A tenant whose journey calls ``host``; returns an API token for it."""
    from crm_journeys.auth import create_api_token

    db = Database(url)
    try:
        tenant_id = workload.setup_tenant(db, datetime.now(UTC), [_journey(host.url)],
                                          settings={"allow_private_webhooks": True})
        with db.unit_of_work() as s:
            return create_api_token(s, tenant_id, "bench", role="editor")
    finally:
        db.dispose()


@contextmanager
def deployed(folder: Path) -> Iterator[tuple[str, int]]:
    """(database URL, web port): a fresh SQLite database, the web app and ``crm-journeys
    worker`` (defaults) each in its own process; SIGTERM to both at exit."""
    url = f"sqlite:///{folder / 'bench.db'}"
    # one instance folder for all three processes: the tenant's secrets this process seals
    # are unsealed by the worker with the same key file
    os.environ["CRM_JOURNEYS_INSTANCE"] = str(folder)
    forget_keys()
    db = Database(url)
    db.upgrade()
    db.dispose()
    env = {**os.environ, "CRM_JOURNEYS_INSTANCE": str(folder), "CRM_JOURNEYS_LOG_LEVEL": "WARNING"}
    web = subprocess.Popen([sys.executable, "-m", "bench.p6_server", str(folder), url, "waitress"],
                           cwd=ROOT, env=env)
    worker = subprocess.Popen([sys.executable, "-c", "from crm_journeys.cli import main; main()",
                               "--database", url, "worker"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not ((folder / "port").exists() and (folder / "port").read_text().strip()):
            if web.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the web app did not start")
            time.sleep(0.05)
        yield url, int((folder / "port").read_text())
    finally:
        for proc in (web, worker):
            proc.send_signal(signal.SIGTERM)
        for proc in (web, worker):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _body(email: str, sent_at: float) -> str:
    return json.dumps({"type": "subscribed", "key": "newsletter", "id": email,
                       "contact": {"email": email}, "properties": {"list": "newsletter", "sent_at": sent_at}})


def send(port: int, token: str, prefix: str, rate: float, total: int) -> tuple[dict[str, float], float]:
    """``total`` events at ``rate`` (0: as fast as accepted) over ``SENDERS`` keep-alive
    connections; ({email: sent at}, seconds until the last was accepted)."""
    stamps: dict[str, float] = {}
    start = time.monotonic() + 0.05
    failures: list[int] = []

    def sender(k: int) -> None:
        conn = Connection(port, token)
        for i in range(k, total, SENDERS):
            if rate:
                wait = start + i / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            email = f"{prefix}{i}@example.com"
            stamps[email] = time.time()
            try:
                if conn.post(_body(email, stamps[email])) != 202:
                    failures.append(i)
            except OSError:
                failures.append(i)
        conn.close()

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"{len(failures)} events were refused")
    return stamps, time.monotonic() - start


def _latencies(stamps: dict[str, float], host: StandIn, wait: float = 120.0) -> list[float]:
    """Milliseconds from each send to its host's arrival stamp, once all have arrived."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and not all(e in host.arrived for e in stamps):
        time.sleep(0.05)
    missing = [e for e in stamps if e not in host.arrived]
    if missing:
        raise RuntimeError(f"{len(missing)} of {len(stamps)} events never reached the host")
    return [(host.arrived[e] - t) * 1000 for e, t in stamps.items()]


def _warm(port: int, token: str, host: StandIn, prefix: str) -> None:
    """A deployed worker and web app are long-running: code loaded, rules registered."""
    stamps, _ = send(port, token, prefix, 50, 50)
    _latencies(stamps, host)
    time.sleep(1.0)


def p7(quick: bool) -> dict[str, Any]:
    rate, seconds = (20, 3) if quick else (20, 15)
    n = int(rate * seconds)
    a, b = StandIn(), StandIn()
    out: dict[str, Any] = {"figure": "P7", "rate": rate, "events": n}
    try:
        with tempfile.TemporaryDirectory() as tmp, deployed(Path(tmp)) as (url, port):
            token_a, token_b = _tenant(url, a), _tenant(url, b)
            _warm(port, token_b, b, "wb")
            stamps, _ = send(port, token_b, "alone", rate, n)
            alone = _latencies(stamps, b)
            out["alone_p50_ms"], out["alone_p99_ms"] = percentile(alone, 50), percentile(alone, 99)
            for mode in ("hang", "503", "429"):
                a.mode = mode
                noisy = threading.Thread(target=send, args=(port, token_a, f"a{mode}", rate, n))
                noisy.start()
                stamps, _ = send(port, token_b, f"b{mode}", rate, n)
                noisy.join()
                lat = _latencies(stamps, b)
                out[f"{mode}_p50_ms"], out[f"{mode}_p99_ms"] = percentile(lat, 50), percentile(lat, 99)
                out[f"{mode}_a_requests"] = a.requests
            a.release.set()
    finally:
        a.close()
        b.close()
    worst = max(out[f"{m}_p99_ms"] for m in ("hang", "503", "429"))
    out["ratio"] = worst / out["alone_p99_ms"]
    out["goal"] = "B's p99 with A's CRM hanging / 503 / 429 <= 2 x alone + 1 s"
    out["holds"] = all(out[f"{m}_p99_ms"] <= 2 * out["alone_p99_ms"] + 1000 for m in ("hang", "503", "429"))
    return out


def p8(quick: bool) -> dict[str, Any]:
    rate, seconds, burst = (50, 3, 300) if quick else (50, 20, 2000)
    host = StandIn()
    out: dict[str, Any] = {"figure": "P8", "rate": rate, "events": int(rate * seconds), "burst": burst}
    try:
        with tempfile.TemporaryDirectory() as tmp, deployed(Path(tmp)) as (url, port):
            token = _tenant(url, host)
            _warm(port, token, host, "w")
            stamps, _ = send(port, token, "steady", rate, int(rate * seconds))
            lat = _latencies(stamps, host)
            out["p50_ms"], out["p99_ms"] = percentile(lat, 50), percentile(lat, 99)
            time.sleep(1.0)
            stamps, accept_s = send(port, token, "burst", 0, burst)
            _latencies(stamps, host, wait=300)
            first = min(stamps.values())
            finish_s = max(host.arrived[e] for e in stamps) - first
            out["accepted_per_s"], out["finished_per_s"] = burst / accept_s, burst / finish_s
    finally:
        host.close()
    out["ratio"] = out["finished_per_s"] / out["accepted_per_s"]
    out["goal"] = "p50 <= 15 ms, p99 <= 100 ms at 50/s; burst finished >= 0.9 x accepted rate"
    out["holds"] = out["p50_ms"] <= 15 and out["p99_ms"] <= 100 and out["ratio"] >= 0.9
    return out

"""P6 as deployed: three processes on one machine, talking over loopback and the database.

- the web app (``bench/p6_server.py``: ``POST /api/events`` on waitress),
- the worker(s) (``bench/p6_worker.py``: ``Worker`` as ``crm-journeys worker`` runs it,
  stamping the commit of each dispatched batch),
- the sender (``bench/p6_load.py``: webhooks at a fixed rate, each stamped ``sent_at``).

Latency is the commit of the batch holding an event's outbox row minus the sender's stamp
(both ``time.time()`` on the same machine).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import distinct, func, select

from bench import workload
from bench.common import percentile
from crm_journeys.storage.db import Database
from crm_journeys.storage.models import Contact, InboxEvent, OutboxMessage

ROOT = Path(__file__).resolve().parent.parent
# How long an idle worker sleeps before it looks again. The default (0.5 s) is what an event
# arriving at an idle worker may wait: at 100 events/s it gave p50 176 ms / p99 551 ms
# against 27 / 103 ms with 0.05 s, for five short queries per look. A busy worker never sleeps.
IDLE_SLEEP = 0.05
DRAIN_TIMEOUT = 120.0  # seconds the backlog may take once the sender is done
SERVER = "waitress"  # or "werkzeug": see bench/p6_server.py


def setup(url: str) -> str:
    """A fresh schema, the welcome journey published, an editor API token (returned)."""
    from crm_journeys.auth import create_api_token

    db = Database(url)
    try:
        db.upgrade()
        tenant_id = workload.setup_tenant(db, datetime.now(UTC), [workload.welcome()])
        with db.unit_of_work() as s:
            return create_api_token(s, tenant_id, "p6", role="editor")
    finally:
        db.dispose()


def _python(module: str, *args: str, folder: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CRM_JOURNEYS_INSTANCE": str(folder)}  # the web secret lands here
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env)


def _wait_for(path: Path, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    """Until ``proc`` has written ``path`` (its port, or that it is ready)."""
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.args!r} did not start (exit {proc.returncode})")
        time.sleep(0.05)


def machine_busy() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, all CPUs (``/proc/stat``)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # idle and iowait are not busy


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Running:
    """The started processes by name (``w0``.., ``web``) and the web port."""

    procs: dict[str, subprocess.Popen[bytes]]
    port: int = 0

    def cpu(self) -> dict[str, float]:
        """CPU seconds each process has used so far."""
        return {name: cpu_seconds(proc.pid) for name, proc in self.procs.items()}


@contextmanager
def processes(url: str, folder: Path, workers: int) -> Iterator[Running]:
    """The worker(s) and the web app running; at exit all get SIGTERM (the workers then
    write their commit stamps)."""
    running = Running({f"w{i}": _python("bench.p6_worker", str(folder), url, f"w{i}", str(IDLE_SLEEP),
                                        folder=folder) for i in range(workers)})
    running.procs["web"] = _python("bench.p6_server", str(folder), url, SERVER, folder=folder)
    try:
        for name, proc in running.procs.items():
            _wait_for(folder / ("port" if name == "web" else f"ready-{name}"), proc)
        running.port = int((folder / "port").read_text())
        yield running
    finally:
        for proc in running.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in running.procs.values():
            proc.wait(60)


def wait_drained(url: str, seconds: float = DRAIN_TIMEOUT) -> None:
    """Until no inbox event is pending (the sender has finished; what is left is backlog)."""
    db = Database(url, pool_size=1)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with db.unit_of_work() as s:
                if not s.scalar(select(func.count(InboxEvent.id)).where(InboxEvent.status == "pending")):
                    return
            time.sleep(0.2)
    finally:
        db.dispose()


def latencies(url: str, folder: Path) -> tuple[list[float], int]:
    """(latency in ms of every stamped event with a commit stamp, stamped contacts that have
    an outbox row)."""
    committed: dict[int, float] = {}
    for path in folder.glob("commits-*.json"):
        committed.update({int(k): v for k, v in json.loads(path.read_text()).items()})
    db = Database(url, pool_size=1)
    try:
        with db.unit_of_work() as s:
            sent_at = {i: float(p["properties"]["sent_at"])
                       for i, p in s.execute(select(InboxEvent.id, InboxEvent.payload)
                                             .where(InboxEvent.dedup_key.like("api:p6:%")))}
            rows = s.scalar(select(func.count(distinct(OutboxMessage.contact_id)))
                            .join(Contact, Contact.id == OutboxMessage.contact_id)
                            .where(Contact.email.like("p6c%")))  # the stamped ones, not the warm-up
    finally:
        db.dispose()
    return [(committed[i] - t) * 1000 for i, t in sent_at.items() if i in committed], int(rows or 0)


def send_load(port: int, token: str, rate: int, seconds: float) -> dict[str, Any]:
    """Run the sender process to the end; its report, plus how busy the machine's CPUs were
    meanwhile (1.0: all of them, all the time)."""
    busy0, total0 = machine_busy()
    load = subprocess.run([sys.executable, "-m", "bench.p6_load", str(port), str(rate), str(seconds), token],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    busy1, total1 = machine_busy()
    sent: dict[str, Any] = json.loads(load.stdout.strip().splitlines()[-1])
    sent["machine_busy"] = round((busy1 - busy0) / max(1, total1 - total0), 2)
    return sent


def measure(url: str, folder: Path, rate: int, seconds: float, workers: int = 1) -> dict[str, Any]:
    """One P6 run on ``url``: the rate reached, errors, latency and HTTP percentiles, and the
    CPU each process spent per event (the backlog drained after the sender is included)."""
    from crm_journeys.secrets import forget_keys

    # one instance folder for this process and the ones it starts: the tenant's secrets
    # sealed here are unsealed by the worker with the same key file
    os.environ["CRM_JOURNEYS_INSTANCE"] = str(folder)
    forget_keys()
    token = setup(url)
    with processes(url, folder, workers) as running:
        cpu0 = running.cpu()
        sent = send_load(running.port, token, rate, seconds)
        wait_drained(url)
        cpu = {k: v - cpu0[k] for k, v in running.cpu().items()}
    cpu["sender"] = sent["cpu_s"]
    lat, rows = latencies(url, folder)
    return {"sent_rate": sent["rate"], "sent": sent["sent"], "errors": sent["errors"],
            "outbox_rows": rows, "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
            "http_p50_ms": sent["p50_ms"], "http_p99_ms": sent["p99_ms"], "workers": workers,
            "machine_busy": sent["machine_busy"],
            "cpu_ms_per_event": {k: round(v * 1000 / max(1, sent["sent"]), 2) for k, v in cpu.items()},
            "sustained": rows == len(lat) == sent["sent"] and sent["errors"] == 0
            and sent["rate"] >= 0.95 * rate}

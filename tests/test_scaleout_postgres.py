"""Scale-out on PostgreSQL: three worker processes share one database. 10,000 events over
1,000 contacts give exactly the outcome of a single-worker run, with no duplicate outbox
rows, also when one worker is killed with SIGKILL in the middle of its work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm_journeys.storage.db import Database
from crm_journeys.storage.models import InboxEvent, OutboxMessage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import workload  # noqa: E402
from tests.conftest import PG_ENV, _fresh_postgres  # noqa: E402

pytestmark = [pytest.mark.postgres,
              pytest.mark.skipif(not os.environ.get(PG_ENV),
                                 reason=f"{PG_ENV} is not set: scale-out needs a PostgreSQL server")]

EVENTS, CONTACTS, WORKERS = 10_000, 1_000, 3
WORKER_CODE = ("import sys; from crm_journeys.runtime.worker import run_worker; "
               "run_worker(sys.argv[1], sys.argv[2], batch=100, idle_sleep=0.05, lease_seconds=3)")


def _prepared(url: str) -> tuple[Database, int]:
    db = Database(url)
    db.upgrade()
    tenant_id = workload.setup_tenant(db, workload.START, [workload.welcome()])
    workload.ingest_all(db, tenant_id, workload.mixed_events(EVENTS, CONTACTS), workload.START)
    return db, tenant_id


def _busy(db: Database, tenant_id: int) -> int:
    with db.unit_of_work() as s:
        inbox = s.scalar(select(func.count(InboxEvent.id)).where(
            InboxEvent.tenant_id == tenant_id, InboxEvent.status == "pending")) or 0
        outbox = s.scalar(select(func.count(OutboxMessage.id)).where(
            OutboxMessage.tenant_id == tenant_id, OutboxMessage.status == "pending",
            OutboxMessage.next_attempt_at <= func.now())) or 0
    return inbox + outbox


def _start(url: str, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", WORKER_CODE, url, name], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _run_workers(url: str, db: Database, tenant_id: int, *, kill_one: bool) -> None:
    procs = [_start(url, f"w{i}") for i in range(WORKERS)]
    try:
        killed = not kill_one
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if not killed and workload.pending(db, tenant_id) < EVENTS * 2 // 3:
                procs[0].send_signal(signal.SIGKILL)  # in the middle of a batch: it never rests
                procs[0].wait()
                killed = True
            if killed and _busy(db, tenant_id) == 0:
                break
        else:
            pytest.fail("the workers did not drain the queues in time")
        for p in procs[1:]:
            assert p.poll() is None, p.stderr.read().decode() if p.stderr else ""
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait(timeout=30)


@pytest.fixture(scope="module")
def single_worker_outcome() -> dict:
    from crm_journeys.runtime.services import Runtime
    from crm_journeys.runtime.worker import Worker

    url, drop = _fresh_postgres(os.environ[PG_ENV])
    try:
        db, tenant_id = _prepared(url)
        Worker(Runtime(db=db), batch=200).drain()
        result = workload.outcome(db, tenant_id)
        db.dispose()
    finally:
        drop()
    assert result["events"] == {"done": EVENTS}
    assert result["outbox"], "the workload must queue actions"
    return result


@pytest.mark.parametrize("kill_one", [False, True], ids=["three-workers", "one-killed-mid-batch"])
def test_three_workers_match_a_single_worker(single_worker_outcome: dict, kill_one: bool) -> None:
    url, drop = _fresh_postgres(os.environ[PG_ENV])
    try:
        db, tenant_id = _prepared(url)
        _run_workers(url, db, tenant_id, kill_one=kill_one)
        result = workload.outcome(db, tenant_id)
        db.dispose()
    finally:
        drop()
    assert result["duplicates"] == []
    assert result["events"] == {"done": EVENTS}
    for part in ("contacts", "instances", "outbox"):
        assert result[part] == single_worker_outcome[part], part

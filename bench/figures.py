"""The figures P1-P6 of issue 6. Each returns a dict with its measurements, the baseline
it is compared with (measured in the same run), the ratio and whether the goal holds."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

from bench import workload
from bench.common import Timer, percentile, postgres_url, rss_kb, sqlite_db
from crm_journeys.clock import Clock, VirtualClock
from crm_journeys.rules.engine import RulesEngine
from crm_journeys.runtime.dispatch import Dispatcher
from crm_journeys.runtime.services import Runtime
from crm_journeys.runtime.timers import fire_due, next_due
from crm_journeys.runtime.worker import Worker
from crm_journeys.storage.db import Database
from crm_journeys.storage.models import Contact, InboxEvent, Instance, OutboxMessage, Wakeup

ROOT = Path(__file__).resolve().parent.parent
START = workload.START
EVENT_TABLES = ["cj_contact", "cj_instance", "cj_outbox", "cj_wakeup", "cj_step_log"]


# --- P1 / P2: end-to-end throughput -----------------------------------------------------------
class _Recording(RulesEngine):
    """The real engine, keeping each decision's input so it can be replayed alone."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def decide(self, compiled: Any, message: dict[str, Any]) -> Any:
        self.calls.append((compiled, message))
        return super().decide(compiled, message)


def _warm(db: Database, rt: Runtime, tenant_id: int) -> None:
    """Register rulesets and load versions once, as a long-running worker would have."""
    workload.ingest_all(db, tenant_id, workload.entry_events(20, offset=10_000_000), START)
    while Dispatcher(rt).run_once(200):
        pass


def end_to_end(db: Database, n: int, documents: list[dict[str, Any]], batch: int = 200) -> dict[str, Any]:
    """Events/s for ingest (pages of ``batch``), routing, transition, outbox row, commit."""
    with Timer() as setup:
        tenant_id = workload.setup_tenant(db, START, documents)
    engine = _Recording()
    rt = Runtime(db=db, clock=VirtualClock(START), engine=engine)
    _warm(db, rt, tenant_id)
    engine.calls.clear()
    events = workload.entry_events(n)
    dispatcher = Dispatcher(rt)
    with Timer() as t:
        for start in range(0, n, batch):
            with db.unit_of_work() as s:
                from crm_journeys.runtime.ingest import ingest_many

                ingest_many(s, tenant_id, events[start:start + batch], START)
            while dispatcher.run_once(batch):
                pass
    with db.unit_of_work() as s:
        outbox = s.scalar(select(func.count(OutboxMessage.id)).where(OutboxMessage.tenant_id == tenant_id))
        done = s.scalar(select(func.count(InboxEvent.id)).where(InboxEvent.tenant_id == tenant_id,
                                                                InboxEvent.status == "done"))
    assert outbox == n + 20 and done == n + 20, (outbox, done)
    return {"rate": n / t.seconds, "seconds": t.seconds, "tenant_id": tenant_id, "engine": engine,
            "setup_seconds": setup.seconds}


def _checkpoint(db: Database) -> int:
    """Fold the WAL into the file; returns the file's size in bytes."""
    path = db.url.removeprefix("sqlite:///")
    db.engine.dispose()
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return Path(path).stat().st_size


def engine_only(calls: list[tuple[Any, dict[str, Any]]]) -> float:
    """The same decisions replayed on the engine alone: transitions per second of events."""
    engine = RulesEngine()
    for compiled, msg in calls[:5]:
        engine.decide(compiled, msg)
    with Timer() as t:
        for compiled, msg in calls:
            engine.decide(compiled, msg)
    return len(calls) / t.seconds


def raw_sql(db: Database, tenant_id: int, n_events: int, batch: int = 200) -> float:
    """The rows the end-to-end run wrote, written again with plain sqlite3 executemany in
    the same batches (one transaction per ``batch`` events): events per second."""
    src = db.url.removeprefix("sqlite:///")
    with tempfile.TemporaryDirectory(prefix="cj-raw-") as tmp:
        dst = str(Path(tmp) / "raw.db")
        con = sqlite3.connect(src)
        con.execute(f"VACUUM INTO '{dst}'")
        rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
        for table in ["cj_inbox", *EVENT_TABLES]:
            cur = con.execute(f"SELECT * FROM {table} WHERE tenant_id = ? ORDER BY id", (tenant_id,))
            rows[table] = ([d[0] for d in cur.description], cur.fetchall())
        con.close()
        out = sqlite3.connect(dst, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            out.execute(f"PRAGMA {pragma}")
        out.execute("BEGIN")
        for table in reversed(["cj_inbox", *EVENT_TABLES]):
            out.execute(f"DELETE FROM {table} WHERE tenant_id = ?", (tenant_id,))
        out.execute("COMMIT")
        inbox_cols, inbox = rows["cj_inbox"]
        status_at = inbox_cols.index("status")
        pending = [tuple("pending" if i == status_at else v for i, v in enumerate(r)) for r in inbox]
        chunks = max(1, -(-len(inbox) // batch))

        def part(values: list[Any], i: int) -> list[Any]:
            per = -(-len(values) // chunks)
            return values[i * per:(i + 1) * per]

        with Timer() as t:
            for i in range(chunks):
                out.execute("BEGIN IMMEDIATE")
                mine = part(pending, i)
                out.executemany(f"INSERT INTO cj_inbox VALUES ({','.join('?' * len(inbox_cols))})", mine)
                out.execute("COMMIT")
                out.execute("BEGIN IMMEDIATE")
                for table in EVENT_TABLES:
                    cols, values = rows[table]
                    chunk = part(values, i)
                    if chunk:
                        out.executemany(f"INSERT INTO {table} VALUES ({','.join('?' * len(cols))})", chunk)
                out.executemany("UPDATE cj_inbox SET status = 'done', processed_at = ?, attempts = 1 "
                                "WHERE id = ?", [(START.isoformat(), r[0]) for r in mine])
                out.execute("COMMIT")
        out.close()
    return len(inbox) / t.seconds


def p1(quick: bool) -> dict[str, Any]:
    n = 1_000 if quick else 10_000
    with sqlite_db() as db:
        run = end_to_end(db, n, [workload.welcome()])
        eng = engine_only(run["engine"].calls)
        sql = raw_sql(db, run["tenant_id"], n)
        db_bytes = _checkpoint(db)
    combined = 1 / (1 / eng + 1 / sql)
    ratio = run["rate"] / combined
    return {"figure": "P1", "events": n, "e2e_per_s": run["rate"], "engine_per_s": eng, "sql_per_s": sql,
            "combined_per_s": combined, "ratio": ratio, "db_bytes_per_event": db_bytes / (n + 20),
            "goal": "e2e >= 0.70 x combined and >= 2,000/s",
            "holds": ratio >= 0.7 and run["rate"] >= 2000}


def p2(quick: bool) -> dict[str, Any]:
    n = 1_000 if quick else 5_000
    many = 50 if quick else 1_000
    with sqlite_db() as db:
        one = end_to_end(db, n, [workload.welcome()])["rate"]
    with sqlite_db() as db:
        run = end_to_end(db, n, [workload.welcome()] + [workload.unrelated_journey(i) for i in range(many)])
    ratio = run["rate"] / one
    return {"figure": "P2", "events": n, "journeys": many + 1, "one_per_s": one, "many_per_s": run["rate"],
            "publish_s": run["setup_seconds"], "ratio": ratio, "goal": f"rate with {many + 1} >= 0.7 x with 1",
            "holds": ratio >= 0.7}


# --- P3: wake-ups -------------------------------------------------------------------------
def _waiting(db: Database, n: int, due: datetime, *, chunk: int = 20_000) -> int:
    """n contacts waiting in the welcome journey's 3-day check, cloned from one real run."""
    tenant_id = workload.setup_tenant(db, START, [workload.welcome()])
    rt = Runtime(db=db, clock=VirtualClock(START))
    workload.ingest_all(db, tenant_id, workload.entry_events(1, offset=99_999_999), START)
    Worker(rt).dispatcher.run_once()
    with db.unit_of_work() as s:
        inst = s.scalars(select(Instance).where(Instance.tenant_id == tenant_id)).one()
        wake = s.scalars(select(Wakeup).where(Wakeup.tenant_id == tenant_id)).one()
        contact = s.get(Contact, inst.contact_id)
        assert contact is not None
        tmpl = {c.key: getattr(contact, c.key) for c in Contact.__mapper__.column_attrs if c.key != "id"}
        itmpl = {c.key: getattr(inst, c.key) for c in Instance.__mapper__.column_attrs if c.key != "id"}
        wtmpl = {c.key: getattr(wake, c.key) for c in Wakeup.__mapper__.column_attrs if c.key != "id"}
        first = s.scalar(select(func.max(Contact.id))) + 1
        first_i = s.scalar(select(func.max(Instance.id))) + 1
    for start in range(0, n, chunk):
        count = min(chunk, n - start)
        with db.unit_of_work() as s:
            s.execute(insert(Contact), [{**tmpl, "id": first + start + i, "external_id": f"w{start + i}",
                                         "email": f"w{start + i}@example.com"} for i in range(count)])
            s.execute(insert(Instance), [{**itmpl, "id": first_i + start + i, "contact_id": first + start + i}
                                         for i in range(count)])
            s.execute(insert(Wakeup), [{**wtmpl, "instance_id": first_i + start + i, "due_at": due}
                                       for i in range(count)])
    return tenant_id


def p3(quick: bool) -> dict[str, Any]:
    n = 5_000 if quick else 100_000
    due = START + timedelta(days=3)
    with sqlite_db() as db:
        _waiting(db, n, due)
        rt = Runtime(db=db, clock=VirtualClock(due))
        fired = fire_due(rt, 50)  # warm-up: the one real instance and a few clones
        with Timer() as t:
            while (k := fire_due(rt, 500)):
                fired += k
        rate = (fired - 50) / t.seconds if fired > 50 else 0.0
    steady = _steady_lateness(quick)
    return {"figure": "P3", "wakeups": n, "drain_per_s": rate, "ratio": rate / 10_000,
            **steady, "goal": ">= 10,000/s drained; p99 lateness < 1 s at steady load",
            "holds": rate >= 10_000 and steady["p99_lateness_ms"] < 1000}


def _steady_lateness(quick: bool) -> dict[str, Any]:
    """Wake-ups falling due evenly (rate/s over some seconds) under a real clock."""
    rate, seconds = (100, 3) if quick else (500, 10)
    with sqlite_db() as db:
        total = rate * seconds
        _waiting(db, total, START)
        now = datetime.now(UTC)
        begin = now + timedelta(seconds=3)
        with db.unit_of_work() as s:
            s.execute(Wakeup.__table__.update().where(Wakeup.pending.is_(True), Wakeup.id <= 1)
                      .values(pending=False))  # the template instance made on the virtual clock
            ids = list(s.scalars(select(Wakeup.id).where(Wakeup.pending.is_(True)).order_by(Wakeup.id)))
            from sqlalchemy import bindparam

            s.execute(Wakeup.__table__.update().where(Wakeup.id == bindparam("wid"))
                      .values(due_at=bindparam("due")),
                      [{"wid": w, "due": begin + timedelta(seconds=i / rate)} for i, w in enumerate(ids)])
        worker = Worker(Runtime(db=db, clock=Clock()), idle_sleep=0.5)
        thread = threading.Thread(target=worker.run_forever, daemon=True)
        thread.start()
        deadline = time.monotonic() + seconds + 60
        while time.monotonic() < deadline:
            time.sleep(0.5)
            with db.unit_of_work() as s:
                left = s.scalar(select(func.count(Wakeup.id)).where(Wakeup.pending.is_(True),
                                                                    Wakeup.due_at <= begin + timedelta(seconds=seconds)))
            if not left:
                break
        worker.stop()
        thread.join(10)
        with db.unit_of_work() as s:
            late = [float(x) for x in s.scalars(select(Wakeup.lateness_ms).where(Wakeup.lateness_ms.is_not(None),
                                                                                  Wakeup.id > 1))]
    return {"steady_rate": rate, "p50_lateness_ms": percentile(late, 50), "p99_lateness_ms": percentile(late, 99),
            "fired": len(late)}


# --- P4: memory ---------------------------------------------------------------------------
def p4(quick: bool) -> dict[str, Any]:
    big = 20_000 if quick else int(os.environ.get("CJ_BENCH_P4_WAITING", 200_000))
    out: dict[str, Any] = {"figure": "P4", "waiting_small": 1_000, "waiting_big": big}
    for label, n in (("small", 1_000), ("big", big)):
        with sqlite_db() as db:
            _waiting(db, n, START + timedelta(days=3650))
            code = ("import sys, json; from bench.figures import _rss_worker; print(json.dumps(_rss_worker(sys.argv[1])))")
            res = subprocess.run([sys.executable, "-c", code, db.url], cwd=ROOT, capture_output=True, text=True,
                                 check=True)
            out[f"rss_{label}_kb"] = json.loads(res.stdout.strip().splitlines()[-1])
    with sqlite_db() as db:  # bytes per waiting instance through the real pipeline
        run = end_to_end(db, 2_000, [workload.welcome()])
        _checkpoint(db)
        con = sqlite3.connect(db.url.removeprefix("sqlite:///"))
        stats = _table_bytes(con)
        con.close()
        del run
    out.update(stats)
    out["db_bytes_per_waiting"] = stats["state_bytes"] / 2_020
    out["db_bytes_per_waiting_all"] = stats["all_bytes"] / 2_020
    out["ratio"] = out["rss_big_kb"] / out["rss_small_kb"]
    out["goal"] = f"RSS({big:,}) <= 1.2 x RSS(1,000); <= 1 KB of database per waiting instance"
    out["holds"] = out["ratio"] <= 1.2 and out["db_bytes_per_waiting"] <= 1024
    return out


def _table_bytes(conn: Any) -> dict[str, int]:
    """Bytes per table (with its indexes) from SQLite's dbstat."""
    rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    sizes = {name: int(b) for name, b in rows}
    idx = conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'").fetchall()
    owner = {name: tbl for name, tbl in idx}
    per_table: dict[str, int] = {}
    for name, b in sizes.items():
        per_table[owner.get(name, name)] = per_table.get(owner.get(name, name), 0) + b
    state = sum(per_table.get(t, 0) for t in ("cj_instance", "cj_wakeup"))
    return {"state_bytes": state, "all_bytes": sum(per_table.values()),
            "bytes_by_table": {k: v for k, v in per_table.items() if k.startswith("cj_") and v > 4096}}


def _rss_worker(url: str) -> int:
    """A worker on a database of waiting instances: RSS after it settled (a few passes)."""
    db = Database(url)
    worker = Worker(Runtime(db=db, clock=VirtualClock(START + timedelta(days=1))))
    for _ in range(5):
        worker.step()
        next_due(worker.runtime)  # what an idle worker asks before it sleeps
    return rss_kb()


# --- P5: workers on PostgreSQL --------------------------------------------------------------
def _pg_rate(workers: int, n: int) -> tuple[float, float]:
    """(events/s, share of the machine's CPUs busy meanwhile: workers, server and this
    process's polling)."""
    from bench.p6_run import machine_busy

    with postgres_url() as url:
        db = Database(url)
        db.upgrade()
        tenant_id = workload.setup_tenant(db, START, [workload.welcome()])
        code = ("import sys; from crm_journeys.runtime.worker import run_worker; "
                "run_worker(sys.argv[1], sys.argv[2], batch=200, idle_sleep=0.05)")
        procs = [subprocess.Popen([sys.executable, "-c", code, url, f"w{i}"], cwd=ROOT) for i in range(workers)]
        try:
            time.sleep(3)  # imports and first polls
            events = workload.entry_events(n)
            busy0 = machine_busy()
            with Timer() as t:
                workload.ingest_all(db, tenant_id, events, datetime.now(UTC), chunk=n)
                while True:
                    with db.unit_of_work() as s:
                        left = s.scalar(select(func.count(InboxEvent.id)).where(InboxEvent.status == "pending"))
                        left += s.scalar(select(func.count(OutboxMessage.id))
                                         .where(OutboxMessage.status == "pending"))
                    if not left:
                        break
                    time.sleep(0.05)
            busy1 = machine_busy()
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(30)
            db.dispose()
    return n / t.seconds, (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])


def p5(quick: bool) -> dict[str, Any]:
    from bench.common import postgres_available

    if not postgres_available():
        return {"figure": "P5", "skipped": "no PostgreSQL server", "holds": None}
    n = 1_000 if quick else 6_000
    (one, busy_one), (two, busy_two) = _pg_rate(1, n), _pg_rate(2, n)
    ratio = two / one
    cpus = os.cpu_count() or 1
    # how much of the machine each run kept busy, and the machine's CPU per event: a
    # second worker can add at most what the first left idle (on 2 CPUs beside the server)
    return {"figure": "P5", "events": n, "one_worker_per_s": one, "two_workers_per_s": two, "ratio": ratio,
            "machine_busy_one": round(busy_one, 2), "machine_busy_two": round(busy_two, 2),
            "cpu_ms_per_event_one": round(1000 * busy_one * cpus / one, 2),
            "cpu_ms_per_event_two": round(1000 * busy_two * cpus / two, 2),
            "goal": "2 workers >= 1.7 x 1 worker", "holds": ratio >= 1.7}


# --- P6: webhook to outbox latency ----------------------------------------------------------
P6_PG_WORKERS = 2  # the scale-out deployment: several worker processes on one PostgreSQL


def _p6_sqlite(rate: int, seconds: float) -> dict[str, Any]:
    from bench import p6_run

    with tempfile.TemporaryDirectory(prefix="cj-p6-") as tmp:
        return p6_run.measure(f"sqlite:///{Path(tmp) / 'p6.db'}", Path(tmp), rate, seconds, workers=1)


def _p6_postgres(rate: int, seconds: float) -> dict[str, Any]:
    from bench import p6_run

    with tempfile.TemporaryDirectory(prefix="cj-p6-") as tmp, postgres_url() as url:
        return p6_run.measure(url, Path(tmp), rate, seconds, workers=P6_PG_WORKERS)


def p6(quick: bool) -> dict[str, Any]:
    """Webhook over HTTP to outbox row committed, with web app, worker(s) and sender in
    their own processes: on SQLite (one worker, the embedded default) and, when a server
    is reachable, on PostgreSQL (``P6_PG_WORKERS`` workers); keys of the latter start ``pg_``."""
    from bench.common import postgres_available

    rate, seconds = (100, 3) if quick else (500, 20)
    runs = {"": _p6_sqlite(rate, seconds)}
    if postgres_available():
        runs["pg_"] = _p6_postgres(rate, seconds)
    out: dict[str, Any] = {"figure": "P6", "target_rate": rate}
    for prefix, run in runs.items():
        out.update({f"{prefix}{k}": v for k, v in run.items()})
    out.update(ratio=runs[""]["sent_rate"] / rate,
               goal=f"p50 / p99 reported (no target); at >= 95 % of {rate}/s sent, every event "
                    "gets its outbox row, 0 errors",
               holds=all(run["sustained"] for run in runs.values()))
    return out


from bench.lanes import p7, p8  # noqa: E402 - the figures of issue 15, in their own module

FIGURES = {"P1": p1, "P2": p2, "P3": p3, "P4": p4, "P5": p5, "P6": p6, "P7": p7, "P8": p8}

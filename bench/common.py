"""Small helpers shared by the figures: fresh databases, timing, RSS, percentiles."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from crm_journeys.storage.db import Database

PG_URL = os.environ.get("CRM_JOURNEYS_BENCH_DATABASE_URL") or os.environ.get(
    "CRM_JOURNEYS_TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"


@contextmanager
def sqlite_db(name: str = "bench.db") -> Iterator[Database]:
    with tempfile.TemporaryDirectory(prefix="cj-bench-") as tmp:
        db = Database(f"sqlite:///{Path(tmp) / name}")
        db.upgrade()
        try:
            yield db
        finally:
            db.dispose()


@contextmanager
def postgres_url() -> Iterator[str]:
    name = f"cj_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def postgres_available() -> bool:
    try:
        eng = create_engine(PG_URL)
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        eng.dispose()
        return True
    except Exception:
        return False


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.start


def rss_kb(pid: int | None = None) -> int:
    with open(f"/proc/{pid or os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    import platform
    import sqlite3

    return {"nproc": str(os.cpu_count()), "memory": mem, "cpu": model,
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version}

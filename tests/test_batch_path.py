"""The batched fast path of dispatch and wake-ups decides exactly what the event-by-event
path decides (the reference), and a normal stream never needs the fallback.

The fast path reads a batch's contacts and instances up front, creates new rows outside
the ORM's unit of work and writes them with one statement per table; the slow path is
the plain per-event code that runs when a batch fails. Both must leave the same rows.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crm_journeys.clock import VirtualClock
from crm_journeys.runtime import dispatch, timers
from crm_journeys.runtime.ingest import IncomingEvent
from crm_journeys.runtime.services import Runtime
from crm_journeys.runtime.worker import Worker
from crm_journeys.storage.db import Database
from crm_journeys.storage.models import Journey, StepLog

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import workload  # noqa: E402

JOURNEYS = ["welcome_promo.json", "welcome_promo_react.json", "multi_start_filtered.json"]


class _NoBatch:
    """Stands in for BatchCache: every batch fails at once and is redone one by one."""

    def __init__(self, *args: Any, **kwargs: Any):
        raise RuntimeError("batch path switched off for this run")


def _run(db: Database) -> tuple[dict[str, Any], dict[str, Any]]:
    """The outcome while contacts wait (events only) and after their wake-ups fired."""
    documents = [json.loads((ROOT / "examples" / name).read_text()) for name in JOURNEYS]
    again = {**documents[0], "name": "Welcome on every signup", "entry": {"policy": "every_time"}}
    documents.append(again)  # a second entry finds its once-per-contact email already queued
    tenant_id = workload.setup_tenant(db, workload.START, documents)
    clock = VirtualClock(workload.START)
    worker = Worker(Runtime(db=db, clock=clock), batch=50)
    workload.ingest_all(db, tenant_id, workload.mixed_events(1_500, 150, seed=11), clock.now(), chunk=300)
    worker.drain()
    opened = [IncomingEvent(type="email_opened", key="welcome", contact=workload.contact(k),
                            dedup_key=f"open:{k}") for k in range(0, 150, 3)]
    workload.ingest_all(db, tenant_id, opened, clock.now())
    worker.drain()
    waiting = workload.outcome(db, tenant_id)
    clock.advance(timedelta(days=4))
    worker.drain()
    return waiting, {**workload.outcome(db, tenant_id), "log": _log_summary(db, tenant_id)}


def _log_summary(db: Database, tenant_id: int) -> Counter[tuple[Any, ...]]:
    """What the step log says happened, without row ids: kinds, steps, branches, whether
    each action was queued, and which rows carry the decision's facts."""
    with db.unit_of_work() as s:
        rows = s.execute(select(Journey.name, StepLog.kind, StepLog.step, StepLog.branch, StepLog.detail)
                         .join(Journey, Journey.id == StepLog.journey_id).where(StepLog.tenant_id == tenant_id))
        return Counter((name, kind, step, branch, detail.get("queued"), "facts" in detail)
                       for name, kind, step, branch, detail in rows)


def test_fast_path_leaves_the_rows_of_the_event_by_event_path(
        database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, logger="crm_journeys.runtime")
    fast = _run(database)
    assert not [r for r in caplog.records if "redoing" in r.getMessage()], "a normal stream fell back"
    assert {i[4] for i in fast[0]["instances"]} >= {"active", "completed", "exited"}
    assert len(fast[1]["outbox"]) > len(fast[0]["outbox"])  # the wake-ups sent promos and reminders
    assert any(key[4] is False for key in fast[1]["log"])  # some actions were already done (entry twice)

    monkeypatch.setattr(dispatch, "BatchCache", _NoBatch)
    monkeypatch.setattr(timers, "BatchCache", _NoBatch)
    reference = Database(f"sqlite:///{tmp_path / 'reference.db'}")
    reference.upgrade()
    try:
        slow = _run(reference)
    finally:
        reference.dispose()
    assert any("redoing" in r.getMessage() for r in caplog.records)
    assert fast == slow


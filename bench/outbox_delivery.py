"""``python -m bench.outbox_delivery``: the worker's CPU per delivered outbox row.

The rows come the real way: the welcome journey published, ``subscribed`` events for new
contacts named by email (as P6 sends them, so the embedded sandbox CRM accepts the email)
ingested and dispatched with ``Dispatcher``. Only ``OutboxRunner.run_once`` is timed, until
the outbox is empty, in CPU seconds of this process (``time.process_time``: other work on the
machine does not count, but the database server's CPU on PostgreSQL does not either).

Baselines from the same run, same database:

* *claim + close*: the same number of rows, queued the same way for a second tenant, with
  their action switched to a no-op: what the runner costs when the action costs nothing.
* *dispatch*: CPU per event of the dispatch that queued the measured rows.

Options: ``--rows N`` (default 3,000), ``--batch B`` (default 200, as ``Worker``),
``--only sqlite|postgresql``, ``--profile`` (pyinstrument over the delivery, printed).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update

from bench import workload
from bench.common import postgres_available, postgres_url, sqlite_db
from crm_journeys.actions.base import Action, ActionContext, ActionResult, ParamsSchema
from crm_journeys.runtime.dispatch import Dispatcher
from crm_journeys.runtime.ingest import IncomingEvent
from crm_journeys.runtime.outbox import OutboxRunner
from crm_journeys.runtime.services import Runtime
from crm_journeys.storage.db import Database
from crm_journeys.storage.models import InboxEvent, OutboxMessage, SandboxRecord

NOOP = "bench_noop"


class NoOp(Action[dict[str, Any]]):
    """The claim + close floor: no parameters read, no CRM call, nothing emitted."""

    name, label, params_schema = NOOP, "No-op (bench)", ParamsSchema

    def load_params(self, raw: dict[str, Any]) -> dict[str, Any]:
        return {}

    def execute(self, ctx: ActionContext, params: dict[str, Any]) -> ActionResult:
        return ActionResult.done("nothing", idempotent=True)  # no outside effect


def register_noop() -> None:
    """Added to the (cached) registry of this process only: a bench action must not be
    installed for real users through an entry point."""
    from crm_journeys.actions.registry import installed_actions

    installed_actions()[NOOP] = NoOp


def email_events(n: int, prefix: str) -> list[IncomingEvent]:
    """New subscribers named by email only, as P6's webhooks name them."""
    return [IncomingEvent(type="subscribed", key="newsletter", contact={"email": f"{prefix}{i}@example.com"},
                          properties={"list": "newsletter"}, dedup_key=f"{prefix}:{i}") for i in range(n)]


def cpu(fn: Callable[[], int]) -> tuple[float, int]:
    """CPU seconds of this process spent calling ``fn`` until it returns 0, and the total."""
    total = 0
    start = time.process_time()
    while found := fn():
        total += found
    return time.process_time() - start, total


def queue_rows(rt: Runtime, n: int, prefix: str, batch: int) -> tuple[int, float]:
    """A tenant with the welcome journey and ``n`` queued welcome emails; returns the tenant
    and the dispatch's CPU seconds per event."""
    tenant_id = workload.setup_tenant(rt.db, rt.clock.now(), [workload.welcome()])
    workload.ingest_all(rt.db, tenant_id, email_events(n, prefix), rt.clock.now())
    seconds, handled = cpu(lambda: Dispatcher(rt).run_once(batch))
    assert handled == n, (handled, n)
    return tenant_id, seconds / n


def counts(db: Database, tenant_id: int) -> dict[str, int]:
    with db.unit_of_work() as s:
        def n(stmt: Any) -> int:
            return int(s.scalar(stmt) or 0)

        return {
            "done": n(select(func.count()).where(OutboxMessage.tenant_id == tenant_id,
                                                 OutboxMessage.status == "done")),
            "not_done": n(select(func.count()).where(OutboxMessage.tenant_id == tenant_id,
                                                     OutboxMessage.status != "done")),
            "crm_emails": n(select(func.count()).where(SandboxRecord.tenant_id == tenant_id,
                                                       SandboxRecord.kind == "email")),
            "email_sent_events": n(select(func.count()).where(InboxEvent.tenant_id == tenant_id,
                                                              InboxEvent.type == "email_sent")),
        }


@contextmanager
def profiled(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))


def measure(db: Database, rows: int, batch: int, profile: bool) -> dict[str, Any]:
    rt = Runtime(db=db)
    noop_tenant, _ = queue_rows(rt, rows, "noop", batch)
    with db.unit_of_work() as s:
        s.execute(update(OutboxMessage).where(OutboxMessage.tenant_id == noop_tenant).values(action=NOOP))
    tenant_id, dispatch_cpu = queue_rows(rt, rows, "mail", batch)
    runner = OutboxRunner(rt, "bench")
    # The no-op tenant's rows are older, so they are claimed (and measured) first.
    floor_cpu, floor_rows = cpu(lambda: _only_pending(runner, db, noop_tenant, batch))
    with profiled(profile):
        delivery_cpu, delivered = cpu(lambda: runner.run_once(batch))
    result = counts(db, tenant_id)
    assert result["not_done"] == 0 and result["done"] == rows == delivered, (result, delivered)
    assert result["crm_emails"] == rows == result["email_sent_events"], result
    per_row = delivery_cpu / delivered
    floor = floor_cpu / floor_rows
    return {"rows": rows, "batch": batch, "delivery_ms_per_row": per_row * 1e3,
            "claim_close_ms_per_row": floor * 1e3, "dispatch_ms_per_event": dispatch_cpu * 1e3,
            "ratio_to_claim_close": per_row / floor, "ratio_to_dispatch": per_row / dispatch_cpu, **result}


def _only_pending(runner: OutboxRunner, db: Database, tenant_id: int, batch: int) -> int:
    """Run the no-op rows only: stop once none of the tenant's rows is pending."""
    with db.unit_of_work() as s:
        left = s.scalar(select(func.count()).where(OutboxMessage.tenant_id == tenant_id,
                                                   OutboxMessage.status == "pending"))
    return runner.run_once(min(batch, left or 0)) if left else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    register_noop()
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds")}
    if args.only in (None, "sqlite"):
        with sqlite_db() as db:
            results["sqlite"] = measure(db, args.rows, args.batch, args.profile)
    if args.only in (None, "postgresql"):
        if postgres_available():
            with postgres_url() as url:
                db = Database(url)
                try:
                    db.upgrade()
                    results["postgresql"] = measure(db, args.rows, args.batch, args.profile)
                finally:
                    db.dispose()
        else:
            results["postgresql"] = {"skipped": "no PostgreSQL server reachable"}
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

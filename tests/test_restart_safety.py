"""Kill the worker at any point, start a new one: the same outcome, nothing done twice.

A crash is modelled by a BaseException (nothing in the runtime catches it) raised at a
chosen instant: after the k-th decision was applied but before its transaction committed,
or after the CRM accepted a write but before the outbox row was marked done. A fresh
Runtime (new engine, empty caches) then carries on, as a restarted process would.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crm_journeys.connectors.sandbox import SandboxConnector
from crm_journeys.runtime import transitions
from crm_journeys.runtime.services import Runtime
from crm_journeys.runtime.worker import Worker
from crm_journeys.storage.models import OutboxMessage, SandboxRecord


class Killed(BaseException):
    """The process died here."""


def scenario(h) -> None:  # type: ignore[no-untyped-def]
    """Two purchases through the post-sale journey plus a welcome journey with a wait."""
    h.publish("post_sale_followup.json")
    h.publish("welcome_promo.json")
    for who in ("kim", "lou", "max"):
        h.event("subscribed", f"{who}@example.com", key="newsletter")
        h.event("purchase", f"{who}@example.com", order_id=f"{who}-1")
    h.run_resilient()
    h.advance_resilient(days=1)
    h.event("email_opened", "kim@example.com", key="welcome")
    h.event("purchase", "lou@example.com", order_id="lou-2")
    h.run_resilient()
    h.advance_resilient(days=3)
    h.event("purchase", "lou@example.com", order_id="lou-3")
    h.run_resilient()
    h.advance_resilient(minutes=10)  # past the lease a dead worker held on its outbox rows


def outcome(h) -> tuple:  # type: ignore[no-untyped-def]
    """Outbox rows as (contact, step, action, status), a multiset: ids may differ after a
    crash on PostgreSQL (sequences do not roll back), what was done may not."""
    from crm_journeys.storage.models import Contact

    with h.db.unit_of_work() as s:
        keys = sorted(tuple(r) for r in s.execute(
            select(Contact.email, OutboxMessage.step, OutboxMessage.action)
            .join(Contact, Contact.id == OutboxMessage.contact_id)))
        statuses = sorted(s.scalars(select(OutboxMessage.status)))
        records = s.execute(select(SandboxRecord.kind, func.count()).group_by(SandboxRecord.kind)
                            .order_by(SandboxRecord.kind)).all()
    return keys, statuses, [tuple(r) for r in records]


def _install_resilience(h, crashes: list[int]) -> None:  # type: ignore[no-untyped-def]
    """run/advance that restart the worker (new Runtime) each time it 'dies'."""
    from datetime import timedelta

    from crm_journeys.runtime.worker import advance_to

    def restart() -> None:
        h.runtime = Runtime(db=h.db, clock=h.clock)
        h.worker = Worker(h.runtime)

    def resilient(fn):  # type: ignore[no-untyped-def]
        for _ in range(50):
            try:
                return fn()
            except Killed:
                crashes.append(1)
                restart()
        raise AssertionError("kept dying")

    h.run_resilient = lambda: resilient(h.run)
    def advance(**delta: float) -> None:
        target = h.clock.now() + timedelta(**delta)
        resilient(lambda: advance_to(h.worker, h.clock, target))

    h.advance_resilient = advance


@pytest.fixture
def baseline(tmp_path):  # type: ignore[no-untyped-def]
    """The same scenario, never interrupted, in a database of its own."""
    from crm_journeys.clock import VirtualClock
    from crm_journeys.storage.db import Database
    from tests.conftest import START, Harness

    db = Database(f"sqlite:///{tmp_path / 'baseline.db'}")
    db.upgrade()
    h = Harness(db, VirtualClock(START))
    _install_resilience(h, [])
    scenario(h)
    result = outcome(h)
    db.dispose()
    return result


@pytest.mark.parametrize("kill_at", [1, 2, 3, 5, 8, 11])
def test_crash_between_decision_and_commit(harness, baseline, monkeypatch, kill_at):
    crashes: list[int] = []
    _install_resilience(harness, crashes)
    calls = {"n": 0}
    real_apply = transitions.Applier.apply

    def dying_apply(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = real_apply(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise Killed()
        return result

    monkeypatch.setattr(transitions.Applier, "apply", dying_apply)
    scenario(harness)
    assert crashes, "the crash point was never reached"
    assert outcome(harness) == baseline


@pytest.mark.parametrize("kill_at", [1, 2, 4, 7, 10, 13])
def test_crash_after_crm_write_before_outbox_commit(harness, baseline, monkeypatch, kill_at):
    crashes: list[int] = []
    _install_resilience(harness, crashes)
    calls = {"n": 0}

    def dying(real):  # type: ignore[no-untyped-def]
        def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            result = real(self, *args, **kwargs)  # the CRM has accepted the write...
            calls["n"] += 1
            if calls["n"] == kill_at:
                raise Killed()  # ...and the worker dies before marking the row done
            return result
        return wrapper

    monkeypatch.setattr(SandboxConnector, "_record", dying(SandboxConnector._record))
    monkeypatch.setattr(SandboxConnector, "_change", dying(SandboxConnector._change))
    scenario(harness)
    assert crashes
    keys, statuses, records = outcome(harness)
    assert (keys, statuses, records) == baseline

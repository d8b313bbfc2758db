"""Retention on real rows (SQLite and PostgreSQL): what a prune removes, what it must keep,
batch by batch, per tenant, and that analytics read the same before and after."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from crm_journeys.cli import main
from crm_journeys.clock import Clock, VirtualClock
from crm_journeys.runtime.ingest import IncomingEvent, ingest
from crm_journeys.runtime.retention import (
    DEDUP_FLOOR_DAYS,
    TARGETS,
    RetentionPolicy,
    batches,
    check_policy,
    policies,
    prune,
)
from crm_journeys.runtime.worker import Worker
from crm_journeys.services import queries
from crm_journeys.storage.db import Database
from crm_journeys.storage.journey_models import LapseTimer
from crm_journeys.storage.models import (
    Contact,
    InboxEvent,
    Instance,
    OutboxMessage,
    StepLog,
    StepRollup,
    Tenant,
    Wakeup,
)
from tests.conftest import EXAMPLES, START, Harness

DAY = timedelta(days=1)
WELCOME = json.loads((EXAMPLES / "welcome_promo.json").read_text())
SLOW = {**copy.deepcopy(WELCOME), "name": "Slow welcome"}  # waits a year: its instances stay active
SLOW["steps"][1]["duration"] = "P365D"


def _slug(h: Harness) -> str:
    with h.db.unit_of_work() as s:
        tenant = s.get(Tenant, h.tenant_id)
        assert tenant is not None
        return tenant.slug


def _history(a: Harness, b: Harness) -> dict[str, int]:
    """Three months of two tenants: journeys that finished at once, one waiting a year,
    then, 100 days in, a new contact in flight and rows still to do."""
    journeys = {"welcome": a.publish(WELCOME), "slow": a.publish(SLOW)}
    b.publish(WELCOME)
    for email in ("ada@example.com", "bob@example.com", "cy@example.com"):
        a.event("subscribed", email, key="newsletter")
    b.event("subscribed", "ben@example.com", key="newsletter")
    a.run()
    a.advance(days=1)
    a.event("email_opened", "ada@example.com", key="welcome")
    a.event("purchase", "cy@example.com")  # the goal: cy's instances end there
    a.run()
    a.advance(days=2, minutes=1)  # the three-day checks of the welcome journey
    a.advance(days=97)
    a.event("subscribed", "dan@example.com", key="newsletter")  # in flight at the prune
    a.run()
    _unfinished_old_rows(a)
    return journeys


def _unfinished_old_rows(h: Harness) -> None:
    """Rows from day 0 a prune must keep: dead letters, work still to do, a pending lapse."""
    with h.db.unit_of_work() as s:
        tid = h.tenant_id
        old_out = s.scalars(select(OutboxMessage).where(OutboxMessage.tenant_id == tid)
                            .order_by(OutboxMessage.id)).all()
        old_out[0].status = "dead"  # dead-lettered on day 0: kept for dead_days
        old_out[1].status, old_out[1].next_attempt_at = "pending", START + 120 * DAY  # retrying
        old_in = s.scalars(select(InboxEvent).where(InboxEvent.tenant_id == tid)
                           .order_by(InboxEvent.id)).all()
        old_in[0].status = "failed"
        for status in ("pending", "hint"):
            s.add(InboxEvent(tenant_id=tid, dedup_key=f"old-{status}", type="subscribed",
                             status=status, occurred_at=START, received_at=START,
                             lease_until=START + 200 * DAY if status == "hint" else None))
        inst = s.scalars(select(Instance).where(Instance.tenant_id == tid)).first()
        assert inst is not None
        for status in ("fired", "cancelled", "pending"):
            s.add(LapseTimer(tenant_id=tid, journey_id=inst.journey_id, version_id=inst.version_id,
                             starting_point="subscribed", contact_id=inst.contact_id,
                             emit_event="cart_abandoned", cancel_event="purchase",
                             armed_at=START, due_at=START + DAY, status=status))


Rows = dict[str, set[int]]


def _rows(db: Database) -> Rows:
    """Ids of every row of the tables retention touches (all tenants)."""
    models = {"cj_inbox": InboxEvent, "cj_outbox": OutboxMessage, "cj_wakeup": Wakeup,
              "cj_lapse": LapseTimer, "cj_step_log": StepLog}
    with db.unit_of_work() as s:
        return {name: set(s.scalars(select(m.id))) for name, m in models.items()}


def _expected_gone(db: Database, tenant_id: int, now: datetime, policy: RetentionPolicy) -> Rows:
    """What the policy says should go, read straight from the rows (not from the code)."""
    def cut(days: int | None) -> datetime | None:
        return None if days is None else now - timedelta(days=days)

    def old(at: datetime | None, days: int | None) -> bool:
        limit = cut(days)
        return at is not None and limit is not None and at < limit

    gone: Rows = {}
    with db.unit_of_work() as s:
        mine: Callable[[Any], Any] = lambda m: s.scalars(select(m).where(m.tenant_id == tenant_id))  # noqa: E731
        gone["cj_inbox"] = {r.id for r in mine(InboxEvent) if
                            (r.status == "done" and old(r.processed_at, policy.inbox_days))
                            or (r.status == "failed" and old(r.processed_at, policy.dead_days))}
        gone["cj_outbox"] = {r.id for r in mine(OutboxMessage) if
                             (r.status == "done" and old(r.done_at, policy.outbox_days))
                             or (r.status == "dead" and old(r.next_attempt_at, policy.dead_days))}
        gone["cj_lapse"] = {r.id for r in mine(LapseTimer) if r.status != "pending"
                            and old(r.due_at, policy.lapse_days)}
        waiting = {w.instance_id for w in mine(Wakeup) if w.pending}
        ended = {i.id for i in mine(Instance) if i.status != "active"
                 and old(i.ended_at, policy.step_log_days) and i.id not in waiting}
        gone["cj_step_log"] = {r.id for r in mine(StepLog) if r.instance_id in ended}
        gone["cj_wakeup"] = {r.id for r in mine(Wakeup) if r.instance_id in ended}
    return gone


def _analytics(db: Database, tenant_id: int, journey_id: int) -> dict[str, Any]:
    """What the analytics page shows, minus wait lateness (read from fired wake-ups,
    which retention removes: the percentiles describe the retention window)."""
    with db.unit_of_work() as s:
        found = queries.analytics(s, tenant_id, journey_id)
        listed = queries.counts(s, tenant_id)[journey_id]
    for step in found["steps"]:
        step.pop("lateness_p50_ms"), step.pop("lateness_p99_ms")
    return {**found, "listed": listed}


def test_prune_removes_exactly_the_old_finished_rows_batch_by_batch(database: Database,
                                                                    clock: VirtualClock) -> None:
    a, b = Harness(database, clock), Harness(database, clock)
    journeys = _history(a, b)
    now, policy = clock.now(), RetentionPolicy()
    before = _rows(database)
    gone_a = _expected_gone(database, a.tenant_id, now, policy)
    assert all(gone_a.values()), gone_a  # the history gave every table something to remove
    charts = {name: _analytics(database, a.tenant_id, jid) for name, jid in journeys.items()}

    dry = prune(database, now, [_slug(a)], dry_run=True)
    assert _rows(database) == before  # a dry run removes nothing
    assert {t: dry[_slug(a)][t] for t in ("cj_lapse", "cj_wakeup", "cj_step_log")} == {
        t: len(gone_a[t]) for t in ("cj_lapse", "cj_wakeup", "cj_step_log")}
    assert dry[_slug(a)]["cj_inbox"] + dry[_slug(a)]["cj_inbox:failed"] == len(gone_a["cj_inbox"])

    steps = [removed for _, removed in batches(database, policies(database, [_slug(a)]), now, batch_size=2)]
    total: dict[str, int] = {}
    for removed in steps:
        for name, count in removed.items():
            total[name] = total.get(name, 0) + count
    assert total == dry[_slug(a)]  # the run removed what the dry run counted
    assert sum(1 for removed in steps if removed.get("cj_inbox")) > 2  # in several batches
    assert sum(1 for removed in steps if removed.get("cj_step_log")) > 2

    after = _rows(database)
    assert after == {t: ids - gone_a[t] for t, ids in before.items()}  # exactly those; B untouched
    with database.unit_of_work() as s:
        active = s.scalars(select(Instance).where(Instance.status == "active")).all()
        assert active and all(i.history_pruned_at is None for i in active)
        assert {r.status for r in s.scalars(select(InboxEvent).where(
            InboxEvent.tenant_id == a.tenant_id, InboxEvent.received_at < now - 90 * DAY))} == {
            "failed", "pending", "hint"}
    assert {n: _analytics(database, a.tenant_id, j) for n, j in journeys.items()} == charts

    again = prune(database, now, [_slug(a)])  # nothing left to do for A
    assert sum(again[_slug(a)].values()) == 0


def test_each_tenant_keeps_rows_for_its_own_periods(database: Database, clock: VirtualClock) -> None:
    a, b = Harness(database, clock), Harness(database, clock)
    _history(a, b)
    with database.unit_of_work() as s:
        tenant = s.get(Tenant, b.tenant_id)
        assert tenant is not None
        tenant.settings = {**tenant.settings, "retention": {"inbox_days": None, "step_log_days": 365}}
    now = clock.now()
    kept_policy = RetentionPolicy(inbox_days=None, step_log_days=365)
    assert policies(database, [_slug(b)])[0][2] == kept_policy
    before = _rows(database)
    gone = [_expected_gone(database, h.tenant_id, now, p) for h, p in
            ((a, RetentionPolicy()), (b, kept_policy))]
    assert gone[1]["cj_outbox"] and not gone[1]["cj_inbox"] and not gone[1]["cj_step_log"]
    report = prune(database, now)
    assert _rows(database) == {t: ids - gone[0][t] - gone[1][t] for t, ids in before.items()}
    assert report[_slug(b)]["cj_outbox"] == len(gone[1]["cj_outbox"])


def test_folded_analytics_add_up_when_pruned_in_two_rounds(database: Database,
                                                         clock: VirtualClock) -> None:
    """A second prune adds to the rollup instead of replacing it."""
    h = Harness(database, clock)
    jid = h.publish(WELCOME)
    for email in ("a1@example.com", "a2@example.com"):
        h.event("subscribed", email, key="newsletter")
    h.run()
    h.advance(days=3, minutes=1)
    h.advance(days=40)
    for email in ("b1@example.com", "b2@example.com", "b3@example.com"):
        h.event("subscribed", email, key="newsletter")
    h.run()
    h.event("email_opened", "b1@example.com", key="welcome")
    h.advance(days=3, minutes=1)
    chart = _analytics(database, h.tenant_id, jid)
    assert chart["counts"]["completed"] == 5
    short = {"retention": {"step_log_days": 30}}
    with database.unit_of_work() as s:
        tenant = s.get(Tenant, h.tenant_id)
        assert tenant is not None
        tenant.settings = short
    prune(database, clock.now())  # the first two, finished 40 days ago
    assert _analytics(database, h.tenant_id, jid) == chart
    clock.advance(60 * DAY)
    prune(database, clock.now())  # the other three
    assert _analytics(database, h.tenant_id, jid) == chart
    with database.unit_of_work() as s:
        assert not s.scalars(select(StepLog.id)).all()
        visited = {(r.step, r.count) for r in s.scalars(select(StepRollup).where(StepRollup.kind == "visited"))}
    assert visited == {("welcome", 5), ("opened_welcome", 5), ("promo", 1), ("reminder", 4)}


def test_a_redelivered_event_within_the_window_is_still_deduplicated(database: Database,
                                                                   clock: VirtualClock) -> None:
    h = Harness(database, clock)
    with database.unit_of_work() as s:
        tenant = s.get(Tenant, h.tenant_id)
        assert tenant is not None
        tenant.settings = {"retention": {"inbox_days": DEDUP_FLOOR_DAYS}}  # the shortest allowed

    def deliver() -> bool:
        event = IncomingEvent(type="subscribed", key="newsletter", contact={"email": "eve@example.com"},
                              dedup_key="hook:hubspot:9001")
        with database.unit_of_work() as s:
            return ingest(s, h.tenant_id, event, clock.now())

    assert deliver()
    h.run()
    clock.advance(3 * DAY)  # HubSpot's last retry, three days on
    prune(database, clock.now())
    assert not deliver()
    clock.advance((DEDUP_FLOOR_DAYS - 3) * DAY + timedelta(minutes=1))
    assert prune(database, clock.now())[_slug(h)]["cj_inbox"] == 1
    assert deliver()  # past every host's retry window the key is free again


def test_policy_refuses_what_would_break_deduplication() -> None:
    with pytest.raises(ValueError, match="at least 7 days"):
        check_policy({"inbox_days": 3})
    with pytest.raises(ValueError, match="not a retention setting"):
        check_policy({"inbox_dayz": 30})
    with pytest.raises(ValueError, match="whole number"):
        check_policy({"outbox_days": "90"})
    assert check_policy({"dead_days": None, "outbox_days": 10}) == {"dead_days": None, "outbox_days": 10}
    hand_edited = {"retention": {"inbox_days": 1, "outbox_days": 14, "junk": 3}}
    assert RetentionPolicy.of(hand_edited) == RetentionPolicy(outbox_days=14)


def test_worker_sweeps_a_few_batches_per_pass_and_then_waits(sqlite_db: Database,
                                                            clock: VirtualClock) -> None:
    a, b = Harness(sqlite_db, clock), Harness(sqlite_db, clock)
    _history(a, b)
    before = _rows(sqlite_db)
    a.worker.drain()  # the passes tests and the simulator drive never prune
    assert all(ids <= _rows(sqlite_db)[t] for t, ids in before.items())
    now, before = clock.now(), _rows(sqlite_db)
    gone = [_expected_gone(sqlite_db, h.tenant_id, now, RetentionPolicy()) for h in (a, b)]
    worker = Worker(a.runtime, prune_every=600)
    assert worker.retention is not None
    worker.retention.batch_size, worker.retention.batches_per_pass = 2, 3
    passes = 0
    while worker.retention.run_due():
        passes += 1
    assert passes > 5 and worker.retention.run_due() == 0
    assert _rows(sqlite_db) == {t: ids - gone[0][t] - gone[1][t] for t, ids in before.items()}
    clock.advance(timedelta(seconds=599))
    assert worker.retention.run_due() == 0  # not due yet
    clock.advance(timedelta(seconds=1))
    due = 2 * len(TARGETS)  # due: one empty batch per target and tenant, 3 a pass
    expected = [3] * (due // 3) + ([due % 3] if due % 3 else []) + [0]
    sweep = [worker.retention.run_due() for _ in expected]
    assert sweep == expected
    assert sum(sweep) == due
    assert Worker(a.runtime, prune_every=None).retention is None


def test_cli_prune_dry_run_then_prune_and_retention_settings(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    db = Database(url)
    db.upgrade()
    clock = VirtualClock(Clock().now() - 200 * DAY)  # the command reads the wall clock
    h = Harness(db, clock)
    h.publish(WELCOME)
    h.event("subscribed", "old@example.com", key="newsletter")
    h.run()
    h.advance(days=3, minutes=1)
    slug, before = _slug(h), _rows(db)
    runner = CliRunner()

    dry = runner.invoke(main, ["--database", url, "prune", "--dry-run", "--tenant", slug])
    assert dry.exit_code == 0, dry.output
    assert f"{slug}: would remove" in dry.output and "cj_step_log" in dry.output
    assert _rows(db) == before
    kept = runner.invoke(main, ["--database", url, "retention", "set", "--tenant", slug,
                                "outbox_days=365", "step_log_days=never"])
    assert kept.exit_code == 0, kept.output
    assert "outbox_days=365" in kept.output and "step_log_days=never" in kept.output
    refused = runner.invoke(main, ["--database", url, "retention", "set", "--tenant", slug, "inbox_days=2"])
    assert refused.exit_code == 2 and "at least 7 days" in refused.output

    done = runner.invoke(main, ["--database", url, "prune", "--tenant", slug, "--batch-size", "1"])
    assert done.exit_code == 0, done.output
    lines = dict(line.split() for line in done.output.splitlines()[1:])
    assert int(lines["cj_inbox"]) > 0 and lines["cj_outbox"] == "0" and lines["cj_step_log"] == "0"
    after = _rows(db)
    assert after["cj_outbox"] == before["cj_outbox"] and after["cj_step_log"] == before["cj_step_log"]
    assert not after["cj_inbox"]
    unknown = runner.invoke(main, ["--database", url, "prune", "--tenant", "nobody"])
    assert unknown.exit_code == 1 and "no tenant nobody" in unknown.output
    with db.unit_of_work() as s:  # every contact is still there
        assert s.scalars(select(Contact.email)).all() == ["old@example.com"]
    db.dispose()


def test_rows_of_instances_that_ended_recently_stay(database: Database, clock: VirtualClock) -> None:
    """An instance that entered long ago but ended yesterday keeps its timeline."""
    h = Harness(database, clock)
    h.publish(SLOW)
    h.event("subscribed", "old@example.com", key="newsletter")
    h.run()
    clock.advance(200 * DAY)
    h.event("unsubscribed", "old@example.com", key="newsletter")  # the exit rule, today
    h.run()
    with database.unit_of_work() as s:
        s.execute(update(Instance).values(entered_at=START))
    assert [i.status for i in h.instances()] == ["exited"]
    logs = _rows(database)["cj_step_log"]
    report = prune(database, clock.now())[_slug(h)]
    assert report["cj_inbox"] and report["cj_step_log"] == 0  # day-0 events go, the timeline stays
    assert _rows(database)["cj_step_log"] == logs


def test_an_archived_instance_still_waiting_keeps_its_history_until_the_wait_is_over(
        database: Database, clock: VirtualClock) -> None:
    """Archiving exits instances mid-wait; their wake-up stays pending (it fires without
    effect). Pending rows are never removed, so the instance's history waits for it."""
    from crm_journeys.runtime.versions import set_status

    h = Harness(database, clock)
    jid = h.publish(SLOW)
    h.event("subscribed", "old@example.com", key="newsletter")
    h.run()
    with database.unit_of_work() as s:
        set_status(s, h.tenant_id, jid, "archived", clock.now())
    h.advance(days=200)
    report = prune(database, clock.now())[_slug(h)]
    assert (report["cj_step_log"], report["cj_wakeup"]) == (0, 0)
    h.advance(days=300)  # the year-long wait comes due and closes
    with database.unit_of_work() as s:
        assert s.scalars(select(Wakeup.pending)).all() == [False]
    report = prune(database, clock.now())[_slug(h)]
    assert report["cj_step_log"] > 0 and report["cj_wakeup"] == 1


def test_a_pruned_run_says_in_its_timeline_that_retention_removed_its_history(
        database: Database, clock: VirtualClock) -> None:
    """The contact's and the instance's timelines show one "history removed" entry instead
    of an unexplained empty list; a run still kept shows its steps and no such entry."""
    h = Harness(database, clock)
    h.publish(WELCOME)
    h.event("subscribed", "old@example.com", key="newsletter")
    h.event("purchase", "old@example.com")  # the goal: the run ends today
    h.run()
    clock.advance(100 * DAY)
    h.event("subscribed", "new@example.com", key="newsletter")
    h.run()
    old, new = sorted(h.instances(), key=lambda i: i.id)
    assert old.status != "active"
    prune(database, clock.now())
    with database.unit_of_work() as s:
        pruned = queries.instance_detail(s, h.tenant_id, old.id)["timeline"]
        kept = queries.instance_detail(s, h.tenant_id, new.id)["timeline"]
    assert [e["kind"] for e in pruned] == ["history removed"]
    assert "retention removed" in pruned[0]["why"] and pruned[0]["at"] == clock.now()
    assert kept and all(e["kind"] != "history removed" for e in kept)

"""Retention: finished rows are removed once a tenant's retention period has passed, a
small batch at a time, each batch its own short transaction.

What goes, per tenant (``RetentionPolicy``, in ``Tenant.settings["retention"]``):

- ``cj_inbox`` rows processed (``done``) more than ``inbox_days`` ago, and ``failed``
  ones more than ``dead_days`` ago. Never less than ``DEDUP_FLOOR_DAYS``: an inbox row's
  ``dedup_key`` is what turns a host's re-delivery of a webhook into a no-op, so it must
  outlive the longest retry window of any host (HubSpot: app webhooks retry up to 10
  times with exponential backoff, about a day and a half; workflow webhooks up to three
  days). ``processed_at`` is never earlier than ``received_at``, the first delivery.
- ``cj_outbox`` rows ``done`` more than ``outbox_days`` ago, ``dead`` ones (dead-lettered,
  kept for someone to look at) and ``dismissed`` ones (dead ones an admin gave up, see
  ``action_errors``) more than ``dead_days`` after they were given up.
- ``cj_lapse`` rows fired or cancelled, due more than ``lapse_days`` ago.
- ``cj_sms_message`` rows (the local record of texts) untouched for ``outbox_days``.
- The history of instances that ended more than ``step_log_days`` ago: their
  ``cj_step_log`` rows and closed ``cj_wakeup`` rows, all of an instance's at once.
  Analytics read step logs, so what they count is first added to ``cj_step_rollup`` in
  the same transaction (``rollup_counts`` reads it back): the journey's figures stay
  exact while the per-contact timeline of long-finished instances goes. Wait lateness
  percentiles are read from fired wake-ups, so they then describe the instances still
  kept. Wake-ups go with their instance rather than by age because the only index that
  finds old closed ones per tenant would cost every fired wake-up a write.

What never goes: inbox rows still to do (``pending``, ``hint``, ``sync``), outbox rows
still to send (``pending``, claimed or not), pending wake-ups and lapses, step logs and
wake-ups of instances still active, instances themselves (the entered / completed
counts), contacts.

The worker runs a sweep every few minutes outside its queue passes (``RetentionRunner``);
``crm-journeys prune`` runs one by hand, or counts what one would remove (``dry_run``).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crm_journeys.storage.journey_models import LapseTimer
from crm_journeys.storage.models import (
    InboxEvent,
    Instance,
    OutboxMessage,
    StepLog,
    StepRollup,
    Tenant,
    Wakeup,
)
from crm_journeys.storage.sms_models import SmsMessage

if TYPE_CHECKING:
    from crm_journeys.runtime.services import Runtime
    from crm_journeys.storage.db import Database

log = logging.getLogger(__name__)
SETTINGS_KEY = "retention"
DEDUP_FLOOR_DAYS = 7  # above any host's webhook retry window (HubSpot: 3 days at most)
VISIT_KINDS = ("action", "hold", "branch", "exit", "done")  # a log row that means "passed this step"


@dataclass(frozen=True)
class RetentionPolicy:
    """Days each kind of finished row is kept; ``None`` keeps it for ever."""

    inbox_days: int | None = 30
    outbox_days: int | None = 90
    step_log_days: int | None = 90  # and the closed wake-ups of those instances
    lapse_days: int | None = 90
    dead_days: int | None = 180

    @classmethod
    def of(cls, settings: dict[str, Any] | None) -> RetentionPolicy:
        """The tenant's policy: defaults overridden by ``settings["retention"]``. A value
        that does not validate (edited by hand) falls back to its default, logged."""
        given = (settings or {}).get(SETTINGS_KEY) or {}
        policy = cls()
        for key, value in given.items() if isinstance(given, dict) else ():
            try:
                policy = replace(policy, **check_policy({key: value}))
            except ValueError as exc:
                log.warning("retention setting ignored: %s", exc)
        return policy

    def as_dict(self) -> dict[str, int | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def check_policy(values: dict[str, Any]) -> dict[str, int | None]:
    """Validate policy overrides (``{"inbox_days": 45}``); raises ``ValueError`` saying why."""
    known = {f.name for f in fields(RetentionPolicy)}
    out: dict[str, int | None] = {}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"{key}: not a retention setting; use {', '.join(sorted(known))}")
        if value is None:
            out[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key}: a whole number of days (at least 1), or null to keep for ever")
        if key in ("inbox_days", "dead_days") and value < DEDUP_FLOOR_DAYS:
            raise ValueError(f"{key}: at least {DEDUP_FLOOR_DAYS} days, or a host re-delivering "
                             "a webhook would start a journey twice")
        out[key] = value
    return out


# --- what each kind of row is ----------------------------------------------------------------
Removed = dict[str, int]  # table (or table:status) -> rows


@dataclass(frozen=True)
class RowTarget:
    """Finished rows of one table, removed by id in batches once older than the cutoff."""

    name: str
    model: Any
    setting: str
    candidates: Callable[[int, datetime], Select[Any]]  # (tenant, cutoff) -> ids, oldest first
    floor_days: int = 0  # never keep less, whatever the policy says

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,)

    def cutoff(self, policy: RetentionPolicy, now: datetime) -> datetime | None:
        days = getattr(policy, self.setting)
        return None if days is None else now - timedelta(days=max(days, self.floor_days))

    def remove_batch(self, db: Database, tenant_id: int, cutoff: datetime, limit: int,
                     now: datetime) -> tuple[Removed, bool]:
        """Remove up to ``limit`` rows in one transaction; (rows removed, maybe more)."""
        with db.unit_of_work() as s:
            ids = list(s.scalars(_locked(self.candidates(tenant_id, cutoff).limit(limit), db)))
            if ids:
                s.execute(delete(self.model).where(self.model.id.in_(ids)))
        return {self.name: len(ids)}, len(ids) == limit

    def count(self, s: Session, tenant_id: int, cutoff: datetime) -> Removed:
        inner = self.candidates(tenant_id, cutoff).order_by(None).subquery()
        return {self.name: int(s.scalar(select(func.count()).select_from(inner)) or 0)}


def _inbox(status: str) -> Callable[[int, datetime], Select[Any]]:
    def candidates(tenant_id: int, cutoff: datetime) -> Select[Any]:
        # the IS NOT NULL term lets SQLite pick the partial index ix_cj_inbox_processed
        return (select(InboxEvent.id)
                .where(InboxEvent.tenant_id == tenant_id, InboxEvent.processed_at.is_not(None),
                       InboxEvent.processed_at < cutoff, InboxEvent.status == status)
                .order_by(InboxEvent.processed_at))
    return candidates


def _outbox_done(tenant_id: int, cutoff: datetime) -> Select[Any]:
    # the IS NOT NULL term lets SQLite pick the partial index ix_cj_outbox_done: led by the
    # tenant, so rows another tenant keeps longer are never scanned
    return (select(OutboxMessage.id)
            .where(OutboxMessage.tenant_id == tenant_id, OutboxMessage.done_at.is_not(None),
                   OutboxMessage.done_at < cutoff, OutboxMessage.status == "done")
            .order_by(OutboxMessage.done_at))


def _outbox_dead(tenant_id: int, cutoff: datetime) -> Select[Any]:
    # given up at next_attempt_at (dismissing keeps it); few rows, so the (status,
    # next_attempt_at) index will do
    return (select(OutboxMessage.id)
            .where(OutboxMessage.status.in_(("dead", "dismissed")), OutboxMessage.next_attempt_at < cutoff,
                   OutboxMessage.tenant_id == tenant_id)
            .order_by(OutboxMessage.next_attempt_at))


def _texts(tenant_id: int, cutoff: datetime) -> Select[Any]:
    # the local record of texts (cj_sms_message) untouched since the cutoff: their callbacks
    # and retries are long over; a reply to one that old starts nothing (ix_cj_sms_message_updated)
    return (select(SmsMessage.id)
            .where(SmsMessage.tenant_id == tenant_id, SmsMessage.updated_at < cutoff)
            .order_by(SmsMessage.updated_at))


def _lapses(tenant_id: int, cutoff: datetime) -> Select[Any]:
    # unordered: over two statuses, an ORDER BY would sort every old row for each batch
    return (select(LapseTimer.id)
            .where(LapseTimer.status.in_(("fired", "cancelled")), LapseTimer.due_at < cutoff,
                   LapseTimer.tenant_id == tenant_id))


@dataclass(frozen=True)
class HistoryTarget:
    """The history of instances that ended before the cutoff: their step logs, with what
    analytics count folded into ``cj_step_rollup`` in the same transaction, and their
    closed wake-ups; whole instances at a time. An instance whose wake-up is still
    pending (its journey was archived mid-wait: it fires without effect) waits for it."""

    setting: str = "step_log_days"
    names: tuple[str, ...] = ("cj_step_log", "cj_wakeup")
    rows_per_instance: int = 10  # a batch of ``limit`` rows is about limit / 10 instances

    def cutoff(self, policy: RetentionPolicy, now: datetime) -> datetime | None:
        days = policy.step_log_days
        return None if days is None else now - timedelta(days=days)

    @staticmethod
    def ended(tenant_id: int, cutoff: datetime) -> Select[Any]:
        # the two IS [NOT] NULL terms are the partial index ix_cj_instance_ended's own
        waiting = select(Wakeup.id).where(Wakeup.instance_id == Instance.id, Wakeup.pending.is_(True))
        return (select(Instance.id)
                .where(Instance.tenant_id == tenant_id, Instance.ended_at.is_not(None),
                       Instance.history_pruned_at.is_(None), Instance.ended_at < cutoff,
                       Instance.status != "active", ~waiting.exists())
                .order_by(Instance.ended_at))

    def remove_batch(self, db: Database, tenant_id: int, cutoff: datetime, limit: int,
                     now: datetime) -> tuple[Removed, bool]:
        take = max(1, limit // self.rows_per_instance)
        with db.unit_of_work() as s:
            ids = list(s.scalars(_locked(self.ended(tenant_id, cutoff).limit(take), db)))
            if not ids:
                return dict.fromkeys(self.names, 0), False
            logs = s.execute(select(StepLog.journey_id, StepLog.instance_id, StepLog.step,
                                    StepLog.kind, StepLog.branch)
                             .where(StepLog.tenant_id == tenant_id, StepLog.instance_id.in_(ids))).all()
            _add_to_rollup(s, tenant_id, fold(logs), now)
            s.execute(delete(StepLog).where(StepLog.tenant_id == tenant_id, StepLog.instance_id.in_(ids)))
            wakeups = _rowcount(s.execute(delete(Wakeup).where(
                Wakeup.tenant_id == tenant_id, Wakeup.instance_id.in_(ids), Wakeup.pending.is_(False))))
            s.execute(update(Instance).where(Instance.id.in_(ids)).values(history_pruned_at=now))
        return {"cj_step_log": len(logs), "cj_wakeup": wakeups}, len(ids) == take

    def count(self, s: Session, tenant_id: int, cutoff: datetime) -> Removed:
        ended = self.ended(tenant_id, cutoff).order_by(None).subquery()
        found = {}
        for name, model in (("cj_step_log", StepLog), ("cj_wakeup", Wakeup)):
            found[name] = int(s.scalar(select(func.count()).select_from(model)
                                       .join(ended, ended.c.id == model.instance_id)
                                       .where(model.tenant_id == tenant_id)) or 0)
        return found


def _rowcount(result: Any) -> int:
    return int(result.rowcount or 0)


Target = RowTarget | HistoryTarget
TARGETS: tuple[Target, ...] = (
    RowTarget("cj_inbox", InboxEvent, "inbox_days", _inbox("done"), floor_days=DEDUP_FLOOR_DAYS),
    RowTarget("cj_inbox:failed", InboxEvent, "dead_days", _inbox("failed"), floor_days=DEDUP_FLOOR_DAYS),
    RowTarget("cj_outbox", OutboxMessage, "outbox_days", _outbox_done),
    RowTarget("cj_outbox:dead", OutboxMessage, "dead_days", _outbox_dead),
    RowTarget("cj_lapse", LapseTimer, "lapse_days", _lapses),
    RowTarget("cj_sms_message", SmsMessage, "outbox_days", _texts),
    HistoryTarget(),
)


def _locked(stmt: Select[Any], db: Database) -> Select[Any]:
    """On PostgreSQL, rows another pruning worker holds are skipped, not waited for."""
    return stmt.with_for_update(skip_locked=True) if db.is_postgres else stmt


# --- the step-log rollup ---------------------------------------------------------------------
RollupKey = tuple[int, str, str, str]  # journey, kind, step, branch


def fold(logs: Iterable[Any]) -> Counter[RollupKey]:
    """What analytics count in these step-log rows (all rows of whole instances):
    instances per step passed, branch and exit rows, goal rows, instances with a goal."""
    counts: Counter[RollupKey] = Counter()
    visited: set[tuple[int, str, int]] = set()
    reached: set[tuple[int, int]] = set()
    for row in logs:
        if row.kind in VISIT_KINDS and row.step:
            visited.add((row.journey_id, row.step, row.instance_id))
        if row.kind == "branch":
            counts[(row.journey_id, "branch", row.step, row.branch)] += 1
        elif row.kind == "exit":
            counts[(row.journey_id, "exit", row.step, "")] += 1
        elif row.kind == "goal":
            counts[(row.journey_id, "goal", row.step, row.branch)] += 1
            reached.add((row.journey_id, row.instance_id))
    counts.update((journey, "visited", step, "") for journey, step, _ in visited)
    counts.update((journey, "goal_reached", "", "") for journey, _ in reached)
    return counts


def _add_to_rollup(s: Session, tenant_id: int, counts: Counter[RollupKey], now: datetime) -> None:
    if not counts:
        return
    rows = [{"tenant_id": tenant_id, "journey_id": j, "kind": kind, "step": step[:80],
             "branch": branch[:80], "count": n, "updated_at": now}
            for (j, kind, step, branch), n in sorted(counts.items())]
    dml = postgresql if s.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dml.insert(StepRollup)
    table = StepRollup.__table__
    s.execute(stmt.on_conflict_do_update(
        index_elements=["journey_id", "kind", "step", "branch"],
        set_={"count": table.c.count + stmt.excluded.count, "updated_at": stmt.excluded.updated_at}),
        rows)


@dataclass
class Rolled:
    """A journey's analytics counts from pruned step logs, shaped like ``queries.analytics``."""

    visited: Counter[str] = field(default_factory=Counter)
    branches: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    exits: Counter[str] = field(default_factory=Counter)
    goals: Counter[str] = field(default_factory=Counter)  # by goal name (branch) or step
    goal_reached: int = 0


def rollup_counts(s: Session, tenant_id: int, journey_ids: list[int]) -> dict[int, Rolled]:
    """Per journey, what retention folded away (empty ``Rolled`` when nothing was)."""
    out: dict[int, Rolled] = defaultdict(Rolled)
    rows = s.execute(select(StepRollup.journey_id, StepRollup.kind, StepRollup.step,
                            StepRollup.branch, StepRollup.count)
                     .where(StepRollup.tenant_id == tenant_id, StepRollup.journey_id.in_(journey_ids)))
    for journey_id, kind, step, branch, n in rows:
        rolled = out[journey_id]
        if kind == "visited":
            rolled.visited[step] += n
        elif kind == "branch":
            rolled.branches[step][branch] += n
        elif kind == "exit":
            rolled.exits[step] += n
        elif kind == "goal":
            rolled.goals[branch or step] += n
        elif kind == "goal_reached":
            rolled.goal_reached += n
    return out


# --- sweeps ----------------------------------------------------------------------------------
def policies(db: Database, slugs: Iterable[str] = ()) -> list[tuple[int, str, RetentionPolicy]]:
    """(tenant id, slug, policy) of the tenants named, or of all; unknown slugs raise."""
    wanted = sorted(set(slugs))
    with db.unit_of_work() as s:
        query = select(Tenant.id, Tenant.slug, Tenant.settings).order_by(Tenant.id)
        if wanted:
            query = query.where(Tenant.slug.in_(wanted))
        rows = s.execute(query).all()
    missing = set(wanted) - {slug for _, slug, _ in rows}
    if missing:
        raise ValueError(f"no tenant {', '.join(sorted(missing))}")
    return [(tid, slug, RetentionPolicy.of(settings)) for tid, slug, settings in rows]


def batches(db: Database, tenants: list[tuple[int, str, RetentionPolicy]], now: datetime, *,
            batch_size: int = 500) -> Iterator[tuple[str, Removed]]:
    """Remove what the tenants' policies let go, one committed batch per step: yields
    (tenant slug, rows removed per table) after each. ``now`` is fixed for the sweep, so
    a sweep spread over many worker passes never widens its cutoffs."""
    for tenant_id, slug, policy in tenants:
        for target in TARGETS:
            cutoff = target.cutoff(policy, now)
            more = cutoff is not None
            while more:
                assert cutoff is not None
                removed, more = target.remove_batch(db, tenant_id, cutoff, batch_size, now)
                yield slug, removed


def prune(db: Database, now: datetime, slugs: Iterable[str] = (), *, dry_run: bool = False,
          batch_size: int = 500) -> dict[str, Removed]:
    """One full sweep (``crm-journeys prune``); per tenant slug, rows removed per table
    (or, with ``dry_run``, rows a sweep would remove now, nothing removed)."""
    tenants = policies(db, slugs)
    names = [name for target in TARGETS for name in target.names]
    report: dict[str, Removed] = {slug: dict.fromkeys(names, 0) for _, slug, _ in tenants}
    if dry_run:
        with db.unit_of_work() as s:
            for tenant_id, slug, policy in tenants:
                for target in TARGETS:
                    cutoff = target.cutoff(policy, now)
                    if cutoff is not None:
                        report[slug].update(target.count(s, tenant_id, cutoff))
        return report
    for slug, removed in batches(db, tenants, now, batch_size=batch_size):
        for name, count in removed.items():
            report[slug][name] += count
    return report


class RetentionRunner:
    """The worker's periodic sweep: at most ``batches_per_pass`` batches per call, so the
    queues are never held up for long; a sweep too big for one pass goes on at the next.

    A failing sweep is logged and tried again one interval later, not at every pass.
    """

    def __init__(self, runtime: Runtime, *, every: timedelta = timedelta(minutes=15),
                 batch_size: int = 500, batches_per_pass: int = 4):
        self.rt, self.every = runtime, every
        self.batch_size, self.batches_per_pass = batch_size, batches_per_pass
        self._sweep: Iterator[tuple[str, Removed]] | None = None
        self._next_sweep: datetime | None = None  # None: sweep at the first call
        self._removed: Counter[str] = Counter()

    def run_due(self) -> int:
        """Batches run by this call (0 when no sweep is due): work, for the worker loop,
        which does not sleep while a sweep is under way."""
        if self._sweep is None and not self._start(self.rt.clock.now()):
            return 0
        assert self._sweep is not None
        done = 0
        try:
            for _ in range(self.batches_per_pass):
                self._removed.update(next(self._sweep)[1])
                done += 1
        except StopIteration:
            self._finish()
        except Exception:
            log.exception("retention sweep failed; trying again in %s", self.every)
            self._sweep = None
        return done

    def _start(self, now: datetime) -> bool:
        if self._next_sweep is not None and now < self._next_sweep:
            return False
        self._next_sweep = now + self.every
        self._sweep = batches(self.rt.db, policies(self.rt.db), now, batch_size=self.batch_size)
        self._removed = Counter()
        return True

    def _finish(self) -> None:
        self._sweep = None
        if any(self._removed.values()):
            log.info("retention removed %s", ", ".join(f"{n} {name}" for name, n in
                                                       sorted(self._removed.items()) if n))

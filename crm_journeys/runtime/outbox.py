"""Carries out outbox rows: each action runs at least once and takes effect exactly once.

A batch of rows is claimed with a lease in one short transaction, each row's action runs
outside any transaction (the CRM call may be slow), and the rows are closed afterwards
(done, retried later, or dead-lettered). A crash between an action and its row's close
re-runs the row once the lease runs out. Retriable failures back off exponentially with
jitter (or as the host's Retry-After says); after ``MAX_ATTEMPTS``, or on a fatal error,
the row is dead-lettered with the reason.

When a row is closed is what keeps "exactly once" true, and what a row costs:

* A row whose result says ``idempotent`` (the host keeps one record per idempotency key:
  every connector write of a lead, activity or email; or the action only emitted
  de-duplicated events) is closed together with the rest of its batch, in one
  transaction with the events the batch emitted. A crash before that commit re-runs those
  rows after the lease; the host finds each key already there and the events' dedup keys
  drop the copies, so nothing is doubled. The price is re-running up to a batch of such
  rows, which is cheap next to one transaction per row.
* A row that did something a re-run would repeat (an SMTP send, a third-party webhook, a
  tag or field change a later row may overwrite) is closed at once, in the same
  transaction as any rows waiting before it (so emitted events keep their order). A crash
  can then re-run at most the one row in flight, as before.
* A failure (retry or dead letter) had no effect a re-run would double, or one the retry
  repeats anyway, so it waits for the batch close too.
* Waiting rows are also closed after ``FLUSH_AFTER`` seconds, so a batch of slow CRM calls
  neither holds finished rows open nor risks their lease.
* If a joint close fails, the rows are closed one per transaction (as the dispatcher
  redoes a failed batch event by event), so a row that cannot be closed never takes a
  sent email's close down with it; the pass then stops and that row re-runs after its lease.

Per pass, what is the same for many rows is read or built once: a tenant's action
settings and connector, each action's instance, and the batch's contacts and journeys (two
queries for the whole batch, not two per row).
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crm_journeys import metrics
from crm_journeys.actions.base import Action, ActionContext, ActionResult, ContactView, HoldUntil
from crm_journeys.actions.registry import load_action
from crm_journeys.connectors.base import Connector
from crm_journeys.errors import FatalConnectorError, PluginNotFound, RetriableConnectorError
from crm_journeys.runtime import lanes
from crm_journeys.runtime.ingest import IncomingEvent, ingest_many
from crm_journeys.storage.models import Contact, Instance, OutboxMessage

if TYPE_CHECKING:
    from crm_journeys.runtime.services import Runtime

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8
BASE_DELAY = 30.0
MAX_DELAY = 6 * 3600.0
FLUSH_AFTER = 1.0  # seconds a finished row may wait for its batch's close


@dataclass
class Claimed:
    """What executing one row needs, copied out of the claiming transaction."""

    id: int
    tenant_id: int
    action: str
    params: dict[str, Any]
    key: str
    attempts: int
    journey_id: int | None
    contact: ContactView
    lane: str = ""
    instance_id: int | None = None
    step: str = ""
    version_id: int | None = None  # the version the instance runs (its settings)


@dataclass
class Closing:
    """A row's outcome, waiting to be written: the columns to set and the events it emitted."""

    row: Claimed
    values: dict[str, Any]
    emitted: list[IncomingEvent] = field(default_factory=list)
    at_once: bool = False  # the effect is not idempotent: close it right away
    host_failed: tuple[float | None, str] | None = None  # (Retry-After, reason): park the lane


def backoff(attempts: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds to wait before attempt ``attempts + 1``: the host's hint, or capped
    exponential backoff with full jitter."""
    if retry_after is not None:
        return max(1.0, retry_after)
    ceiling = min(MAX_DELAY, BASE_DELAY * (2 ** max(0, attempts - 1)))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class PassCache:
    """What one pass reads or builds once, however many of its rows need it."""

    def __init__(self, runtime: Runtime, *, delivery: bool = False):
        self.rt = runtime
        self.delivery = delivery  # connectors that hand every wait back (``Runtime.connector_for``)
        self._settings: dict[int, dict[str, Any]] = {}
        self._connectors: dict[int, Connector] = {}
        self._actions: dict[str, Action[Any]] = {}
        self._params: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        self.shared: dict[str, Any] = {}  # actions' pass-long resources (ActionContext.pass_cache)

    def close(self) -> None:
        for resource in self.shared.values():
            try:
                resource.close()
            except Exception:
                log.warning("closing %r after the outbox pass failed", resource, exc_info=True)
        self.shared.clear()

    def settings(self, tenant_id: int) -> dict[str, Any]:
        if tenant_id not in self._settings:
            self._settings[tenant_id] = self.rt.action_settings(tenant_id)
        return self._settings[tenant_id]

    def connector(self, tenant_id: int) -> Connector:
        if tenant_id not in self._connectors:
            self._connectors[tenant_id] = self.rt.connector_for(tenant_id, delivery=self.delivery)
        return self._connectors[tenant_id]

    def action(self, name: str) -> Action[Any]:
        """Actions hold no state between calls (their input is the context and params)."""
        if name not in self._actions:
            self._actions[name] = load_action(name)()
        return self._actions[name]

    def params(self, name: str, raw: dict[str, Any]) -> Any:
        """``load_params`` once per distinct parameter set: the rows of one journey step
        carry equal parameters, and validating them costs four times a copy. Each row gets
        its own copy, so an action that changes its parameters changes only its own."""
        seen = self._params.setdefault(name, [])
        for known_raw, loaded in seen:
            if known_raw == raw:
                return copy.deepcopy(loaded)
        loaded = self.action(name).load_params(raw)
        seen.append((raw, loaded))
        return copy.deepcopy(loaded)


class OutboxRunner:
    def __init__(self, runtime: Runtime, worker_id: str = "local"):
        self.rt = runtime
        self.worker_id = worker_id
        self.rng = random.Random()

    def run_once(self, limit: int = 50) -> int:
        """Claim up to ``limit`` due rows, run them in order and close them (see the module
        docstring for when); returns how many were claimed."""
        claimed = self.claim(limit)
        cache = PassCache(self.rt)
        waiting: list[Closing] = []
        since = time.monotonic()
        try:
            for row in claimed:
                closing = self.run_row(row, cache)
                waiting.append(closing)
                if closing.at_once or time.monotonic() - since > FLUSH_AFTER:
                    self.close(waiting)
                    since = time.monotonic()
        finally:  # an interrupted pass still closes what finished (a kill does not: the lease)
            cache.close()
            self.close(waiting)
        return len(claimed)

    def claim(self, limit: int, **lanes: Any) -> list[Claimed]:
        """Lease up to ``limit`` due rows; ``lanes`` are ``Claims.outbox``'s lane options."""
        with self.rt.db.unit_of_work() as s:
            return self.claim_in(s, limit, **lanes)

    def claim_in(self, s: Session, limit: int, **lanes: Any) -> list[Claimed]:
        """``claim`` inside a transaction the caller commits (the delivery pool claims in
        the transaction that closes its finished rows, or in the dispatcher's)."""
        rows = self.rt.claims.outbox(s, self.rt.clock.now(), limit, self.worker_id, **lanes)
        if not rows:
            return []
        s.flush()  # the leases, before the caller's other statements or its commit
        contacts = _contacts(s, {r.contact_id for r in rows})
        runs = _runs(s, {r.instance_id for r in rows if r.instance_id is not None})
        claimed = []
        for r in rows:
            journey_id, version_id = runs.get(r.instance_id or 0, (None, None))
            claimed.append(Claimed(r.id, r.tenant_id, r.action, dict(r.params), r.idempotency_key, r.attempts,
                                   journey_id, contacts[r.contact_id], r.lane, r.instance_id, r.step or "",
                                   version_id))
        return claimed

    def run_row(self, row: Claimed, cache: PassCache) -> Closing:
        emitted: list[IncomingEvent] = []
        try:
            action = cache.action(row.action)
            ctx = ActionContext(tenant_id=row.tenant_id, connector=cache.connector(row.tenant_id),
                                contact=row.contact, idempotency_key=row.key, now=self.rt.clock.now(),
                                outbox_id=row.id, journey_id=row.journey_id, emit=emitted.append,
                                instance_id=row.instance_id, step=row.step, version_id=row.version_id,
                                settings=cache.settings(row.tenant_id), services=self.rt,
                                pass_cache=cache.shared)
            result = action.execute(ctx, cache.params(row.action, row.params))
        except HoldUntil as held:
            return Closing(row, {"status": "pending", "next_attempt_at": held.until, "lease_until": None}, [])
        except RetriableConnectorError as exc:
            log.info("outbox row %s: %s will retry: %s", row.id, row.lane, exc,
                     extra=_ids(row))
            closing = self.retry(row, str(exc), exc.retry_after)
            closing.host_failed = (exc.retry_after, str(exc))
            return closing
        except (FatalConnectorError, PluginNotFound) as exc:
            return self._dead(row, str(exc))
        except Exception as exc:  # unknown failures are retried, then dead-lettered
            log.exception("outbox row %s failed", row.id, extra=_ids(row))
            return self.retry(row, f"{type(exc).__name__}: {exc}", None)
        return self._done(row, result, emitted)

    def _done(self, row: Claimed, result: ActionResult, emitted: list[IncomingEvent]) -> Closing:
        summary = {"summary": result.summary, "external_id": result.external_id, **result.data}
        return Closing(row, {"status": "done", "result": summary, "done_at": self.rt.clock.now(),
                             "attempts": row.attempts + 1, "lease_until": None},
                       emitted, at_once=not result.idempotent)

    def retry(self, row: Claimed, reason: str, retry_after: float | None) -> Closing:
        attempts = row.attempts + 1
        if attempts >= MAX_ATTEMPTS:
            return self._dead(row, f"gave up after {attempts} attempts: {reason}")
        delay = backoff(attempts, retry_after, self.rng)
        return _failed(row, "pending", reason, self.rt.clock.now() + timedelta(seconds=delay), attempts)

    def _dead(self, row: Claimed, reason: str) -> Closing:
        return _failed(row, "dead", reason, self.rt.clock.now(), row.attempts + 1)

    def close(self, waiting: list[Closing]) -> None:
        """Write every waiting outcome and the events they emitted in one transaction.

        The list is emptied first: if the commit fails the rows stay leased and re-run,
        and the pass's final close does not try the same write again. If the joint write
        fails, each row is closed alone, so one row that cannot be closed does not make a
        non-idempotent neighbour run (and send) again."""
        if not waiting:
            return
        closings = list(waiting)
        waiting.clear()
        try:
            self._write(closings)
        except Exception:
            if len(closings) == 1:
                raise
            log.warning("closing %d outbox rows together failed; closing them one by one",
                        len(closings), exc_info=True)
            self._write_one_by_one(closings)

    def _write_one_by_one(self, closings: list[Closing]) -> None:
        """Raises the first failure once every other row is closed: the pass stops rather
        than run more actions it might not be able to close."""
        failure: Exception | None = None
        for closing in closings:
            try:
                self._write([closing])
            except Exception as exc:
                log.exception("outbox row %s could not be closed; it re-runs after its lease", closing.row.id)
                failure = failure or exc
        if failure is not None:
            raise failure

    def _write(self, closings: list[Closing]) -> None:
        with self.rt.db.unit_of_work() as s:
            self.write_in(s, closings)

    def write_in(self, s: Session, closings: list[Closing]) -> None:
        """Write outcomes inside a transaction the caller commits (``close`` is the safe
        way: it falls back to one row per transaction)."""
        _count(closings)
        for group in _same_columns(closings):
            s.execute(update(OutboxMessage), group)
        now = self.rt.clock.now()
        for tenant_id, events in _events_by_tenant(closings):
            ingest_many(s, tenant_id, events, now)
        failed = {c.row.lane: c.host_failed for c in closings if c.host_failed and c.row.lane}
        lanes.settle(s, now, failed, {c.row.lane for c in closings
                                      if c.values["status"] == "done" and c.row.lane})


def _count(closings: list[Closing]) -> None:
    for c in closings:
        status = c.values["status"]
        metrics.DELIVERIES.labels(c.row.action, "retry" if status == "pending" else status).inc()


def _ids(row: Claimed) -> dict[str, Any]:
    """The ids a log line about one row carries (``crm_journeys.logs``)."""
    return {"tenant_id": row.tenant_id, "journey_id": row.journey_id, "outbox_id": row.id,
            "lane": row.lane}


def _failed(row: Claimed, status: str, reason: str, next_at: datetime, attempts: int) -> Closing:
    return Closing(row, {"status": status, "last_error": reason[:2000], "next_attempt_at": next_at,
                         "attempts": attempts, "lease_until": None})


def _same_columns(closings: list[Closing]) -> Iterator[list[dict[str, Any]]]:
    """Outcomes grouped by the columns they set: one executemany UPDATE per group."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for c in closings:
        groups.setdefault(tuple(c.values), []).append({"id": c.row.id, **c.values})
    yield from groups.values()


def _events_by_tenant(closings: list[Closing]) -> Iterator[tuple[int, list[IncomingEvent]]]:
    """Emitted events per tenant, in the order their rows ran."""
    by_tenant: dict[int, list[IncomingEvent]] = {}
    for c in closings:
        if c.emitted:
            by_tenant.setdefault(c.row.tenant_id, []).extend(c.emitted)
    yield from by_tenant.items()


def _contacts(session: Session, ids: set[int]) -> dict[int, ContactView]:
    """The batch's contacts as actions see them, in one query."""
    rows = session.execute(select(Contact.id, Contact.external_id, Contact.email, Contact.fields,
                                  Contact.tags).where(Contact.id.in_(ids)))
    return {r.id: ContactView(r.id, r.external_id, r.email, dict(r.fields or {}), list(r.tags or []))
            for r in rows}


def _runs(session: Session, instance_ids: set[int]) -> dict[int, tuple[int | None, int | None]]:
    """The journey and version of each of the batch's instances, in one query (an email
    reads its version's settings; a query per row cost a third of preparing it)."""
    if not instance_ids:
        return {}
    return {i: (j, v) for i, j, v in session.execute(
        select(Instance.id, Instance.journey_id, Instance.version_id).where(Instance.id.in_(instance_ids)))}

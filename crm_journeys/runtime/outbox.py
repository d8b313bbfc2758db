"""Carries out outbox rows: each action runs at least once and takes effect exactly once.

A row is claimed with a lease in one short transaction, executed outside any transaction
(the CRM call may be slow), and closed in another. A crash in between re-runs the row
after the lease; the idempotency key makes the CRM keep one record. Retriable failures
back off exponentially with jitter (or as the host's Retry-After says); after
``MAX_ATTEMPTS``, or on a fatal error, the row is dead-lettered with the reason.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from crm_journeys.actions.base import ActionContext, ContactView
from crm_journeys.actions.registry import load_action
from crm_journeys.errors import FatalConnectorError, PluginNotFound, RetriableConnectorError
from crm_journeys.runtime.ingest import IncomingEvent, ingest_many
from crm_journeys.storage.models import Contact, OutboxMessage

if TYPE_CHECKING:
    from crm_journeys.runtime.services import Runtime

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8
BASE_DELAY = 30.0
MAX_DELAY = 6 * 3600.0


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


def backoff(attempts: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds to wait before attempt ``attempts + 1``: the host's hint, or capped
    exponential backoff with full jitter."""
    if retry_after is not None:
        return max(1.0, retry_after)
    ceiling = min(MAX_DELAY, BASE_DELAY * (2 ** max(0, attempts - 1)))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class OutboxRunner:
    def __init__(self, runtime: Runtime, worker_id: str = "local"):
        self.rt = runtime
        self.worker_id = worker_id
        self.rng = random.Random()

    def run_once(self, limit: int = 50) -> int:
        claimed = self._claim(limit)
        settings: dict[int, dict[str, Any]] = {}  # read once per tenant per pass, not per row
        for row in claimed:
            if row.tenant_id not in settings:
                settings[row.tenant_id] = self.rt.action_settings(row.tenant_id)
            self._run(row, settings[row.tenant_id])
        return len(claimed)

    def _claim(self, limit: int) -> list[Claimed]:
        now = self.rt.clock.now()
        with self.rt.db.unit_of_work() as s:
            rows = self.rt.claims.outbox(s, now, limit, self.worker_id)
            out = []
            for row in rows:
                contact = s.get(Contact, row.contact_id)
                assert contact is not None
                out.append(Claimed(row.id, row.tenant_id, row.action, dict(row.params), row.idempotency_key,
                                   row.attempts, _journey_of(s, row), ContactView(
                                       contact.id, contact.external_id, contact.email, dict(contact.fields or {}),
                                       list(contact.tags or []))))
            return out

    def _run(self, row: Claimed, settings: dict[str, Any]) -> None:
        emitted: list[IncomingEvent] = []
        try:
            action = load_action(row.action)()
            ctx = ActionContext(tenant_id=row.tenant_id, connector=self.rt.connector_for(row.tenant_id),
                                contact=row.contact, idempotency_key=row.key, now=self.rt.clock.now(),
                                outbox_id=row.id, journey_id=row.journey_id, emit=emitted.append,
                                settings=settings)
            result = action.execute(ctx, action.load_params(row.params))
        except RetriableConnectorError as exc:
            self._retry(row, str(exc), exc.retry_after)
        except (FatalConnectorError, PluginNotFound) as exc:
            self._dead(row, str(exc))
        except Exception as exc:  # unknown failures are retried, then dead-lettered
            log.exception("outbox row %s failed", row.id)
            self._retry(row, f"{type(exc).__name__}: {exc}", None)
        else:
            self._done(row, {"summary": result.summary, "external_id": result.external_id, **result.data},
                       emitted)

    def _done(self, row: Claimed, result: dict[str, Any], emitted: list[IncomingEvent]) -> None:
        now = self.rt.clock.now()
        with self.rt.db.unit_of_work() as s:
            msg = s.get(OutboxMessage, row.id)
            assert msg is not None
            msg.status, msg.result, msg.done_at = "done", result, now
            msg.attempts = row.attempts + 1
            msg.lease_until = None
            ingest_many(s, row.tenant_id, emitted, now)

    def _retry(self, row: Claimed, reason: str, retry_after: float | None) -> None:
        attempts = row.attempts + 1
        if attempts >= MAX_ATTEMPTS:
            self._dead(row, f"gave up after {attempts} attempts: {reason}")
            return
        delay = backoff(attempts, retry_after, self.rng)
        self._close(row, "pending", reason, self.rt.clock.now() + timedelta(seconds=delay), attempts)

    def _dead(self, row: Claimed, reason: str) -> None:
        self._close(row, "dead", reason, self.rt.clock.now(), row.attempts + 1)

    def _close(self, row: Claimed, status: str, reason: str, next_at: datetime, attempts: int) -> None:
        with self.rt.db.unit_of_work() as s:
            msg = s.get(OutboxMessage, row.id)
            assert msg is not None
            msg.status, msg.last_error, msg.next_attempt_at = status, reason[:2000], next_at
            msg.attempts = attempts
            msg.lease_until = None


def _journey_of(session: Any, row: OutboxMessage) -> int | None:
    from crm_journeys.storage.models import Instance

    if row.instance_id is None:
        return None
    inst = session.get(Instance, row.instance_id)
    return inst.journey_id if inst else None

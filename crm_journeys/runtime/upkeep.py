"""Keeping installed CRMs in step: webhook hints fetched by id, and scheduled syncs.

Webhooks are hints. The endpoint stores each as an inbox row with status ``hint`` (the
dispatcher only reads ``pending`` rows), de-duplicated on the host's event id, and
answers at once. Here a worker takes hint rows in small batches, fetches each object once
by id, and ingests the snapshot as a ``contact_upserted`` (or ``contact_deleted``) event,
de-duplicated by record version like a sync page. A hint whose every notification came
from our own integration user is an echo: the snapshot is marked so, the mirror takes
its facts and no journey is triggered.

Incremental syncs run per tenant every ``sync_interval_seconds``. The slot is an inbox
row too (``sync:<slot number>``, status ``sync``), inserted idempotently, so among many
workers exactly one claims each tenant's slot; it reads a few pages per worker pass and
keeps the slot until the host says done, so a long initial sync never holds the loop.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from crm_journeys.connectors.base import CanonicalContact, WebhookHint
from crm_journeys.errors import ConnectorError, RetriableConnectorError
from crm_journeys.runtime.ingest import ingest_many
from crm_journeys.runtime.sync import snapshot_event, sync_pages
from crm_journeys.storage.models import InboxEvent, Tenant
from crm_journeys.storage.upsert import insert_ignoring_conflicts

if TYPE_CHECKING:
    from crm_journeys.runtime.services import Runtime

log = logging.getLogger(__name__)
HINT, SYNC = "hint", "sync"
HINTS_WAITING = "crm_hints_waiting"  # runtime.settings flag set by the webhook endpoint
CONTACT_TYPES = {"contact", "contacts", "Contact", "res.partner"}
MAX_ATTEMPTS = 8


def store_hints(session: Session, tenant_id: int, host: str, hints: list[WebhookHint],
                now: datetime) -> int:
    """Store webhook hints for the worker, once per host event id; returns how many were new."""
    rows = [{"tenant_id": tenant_id, "dedup_key": f"hook:{host}:{h.event_id}"[:200],
             "type": "crm_hint", "key": h.change[:200],
             "contact_ref": f"id:{h.object_id}"[:320],
             "payload": {"object_type": h.object_type, "object_id": h.object_id,
                         "change": h.change, "echo": h.echo, "properties": h.properties},
             "status": HINT, "attempts": 0, "error": "",
             "occurred_at": h.occurred_at or now, "received_at": now} for h in hints]
    return insert_ignoring_conflicts(session, InboxEvent, rows, ["tenant_id", "dedup_key"])


class CrmUpkeep:
    """The worker's step for installed CRMs: hints first, then due syncs."""

    def __init__(self, runtime: Runtime, worker_id: str = "local", *, pages_per_pass: int = 5,
                 page_size: int = 100, check_every: float = 5.0, poll_every: float = 1.0):
        self.rt, self.worker_id = runtime, worker_id
        self.pages_per_pass, self.page_size = pages_per_pass, page_size
        self.check_every = timedelta(seconds=check_every)
        self._next_check: datetime | None = None
        self._next_poll: datetime | None = None
        self.poll_every = timedelta(seconds=poll_every)
        self.lease = timedelta(minutes=5)

    def run_once(self, limit: int = 100) -> int:
        """Claim hints and sync slots in one short transaction, then work outside it.

        An idle worker looks at most every ``poll_every`` (the claim is a write
        transaction); a webhook received in this process flags ``HINTS_WAITING`` in the
        runtime's settings so its hint is taken on the next pass."""
        now = self.rt.clock.now()
        waiting = self.rt.settings.pop(HINTS_WAITING, False)
        if not waiting and self._next_poll is not None and now < self._next_poll:
            return 0
        found = self._claim_and_run(now, limit)
        self._next_poll = now if found else now + self.poll_every
        return found

    def _claim_and_run(self, now: datetime, limit: int) -> int:
        with self.rt.db.unit_of_work() as s:
            if self._next_check is None or now >= self._next_check:
                self._next_check = now + self.check_every
                self._open_slots(s, now)
            hints = [(r.id, r.tenant_id, dict(r.payload)) for r in self._claim(s, HINT, limit)]
            syncs = [(r.id, r.tenant_id) for r in self._claim(s, SYNC, 10)]
        self._run_hints(hints)
        for row_id, tenant_id in syncs:
            self._sync(row_id, tenant_id)
        return len(hints) + len(syncs)

    # --- claiming -----------------------------------------------------------------------
    def _claim(self, session: Session, status: str, limit: int) -> list[InboxEvent]:
        now = self.rt.clock.now()
        stmt = (select(InboxEvent).where(InboxEvent.status == status,
                                         or_(InboxEvent.lease_until.is_(None),
                                             InboxEvent.lease_until < now))
                .order_by(InboxEvent.id).limit(limit))
        if self.rt.db.is_postgres:
            stmt = stmt.with_for_update(skip_locked=True)
        rows = list(session.scalars(stmt))
        for row in rows:
            row.claimed_by, row.lease_until = self.worker_id, now + self.lease
        return rows

    # --- hints --------------------------------------------------------------------------
    def _run_hints(self, claimed: list[tuple[int, int, dict[str, Any]]]) -> None:
        by_tenant: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        for row_id, tenant_id, payload in claimed:
            by_tenant[tenant_id].append((row_id, payload))
        for tenant_id, items in by_tenant.items():
            try:
                self._fetch_hinted(tenant_id, items)
            except Exception as exc:  # noqa: BLE001 - its rows stay leased and are retried
                log.warning("webhook hints of tenant %s failed", tenant_id, exc_info=True)
                self._record_error(tenant_id, "webhook fetch failed", exc)

    def _fetch_hinted(self, tenant_id: int, items: list[tuple[int, dict[str, Any]]]) -> None:
        objects: dict[str, list[int]] = defaultdict(list)
        echo: dict[str, bool] = {}
        ignored = []
        for row_id, payload in items:
            if payload.get("object_type") not in CONTACT_TYPES:
                ignored.append(row_id)
                continue
            oid = str(payload["object_id"])
            objects[oid].append(row_id)
            echo[oid] = echo.get(oid, True) and bool(payload.get("echo"))
        self._close(tenant_id, ignored, [], "done", "not a contact: ignored")
        for oid, row_ids in objects.items():
            try:
                contact = self.rt.connector_for(tenant_id).fetch_contact(oid)
            except RetriableConnectorError as exc:
                self._later(row_ids, str(exc), exc.retry_after)
                continue
            except Exception as exc:  # noqa: BLE001 - fatal for this object only: keep why
                self._close(tenant_id, row_ids, [], "failed", _why(exc))
                self._record_error(tenant_id, "fetching a contact the host notified", exc)
                continue
            if contact is None:
                contact = CanonicalContact(external_id=oid, deleted=True,
                                           version=f"deleted:{oid}")
            contact.echo = echo[oid]
            self._close(tenant_id, row_ids, [contact], "done", "")

    def _close(self, tenant_id: int, row_ids: list[int], contacts: list[CanonicalContact],
               status: str, error: str) -> None:
        if not row_ids:
            return
        now = self.rt.clock.now()
        with self.rt.db.unit_of_work() as s:
            ingest_many(s, tenant_id, [snapshot_event(c) for c in contacts], now)
            for row in s.scalars(select(InboxEvent).where(InboxEvent.id.in_(row_ids))):
                row.status, row.error, row.processed_at = status, error[:2000], now
                row.attempts += 1
                row.lease_until = None

    def _later(self, row_ids: list[int], error: str, retry_after: float | None) -> None:
        now = self.rt.clock.now()
        with self.rt.db.unit_of_work() as s:
            for row in s.scalars(select(InboxEvent).where(InboxEvent.id.in_(row_ids))):
                row.attempts += 1
                row.error = error[:2000]
                wait = retry_after or min(3600.0, 30.0 * 2 ** row.attempts)
                row.lease_until = now + timedelta(seconds=wait)
                if row.attempts >= MAX_ATTEMPTS:
                    row.status, row.processed_at = "failed", now

    # --- scheduled syncs ----------------------------------------------------------------
    def _open_slots(self, s: Session, now: datetime) -> None:
        """One slot row per tenant and interval; older finished slots are pruned."""
        from crm_journeys.hosts import sync_interval

        tenants = s.execute(select(Tenant.id, Tenant.connector, Tenant.settings)
                            .where(Tenant.connector != "sandbox")).all()
        for tenant_id, connector, settings in tenants:
            interval = sync_interval(connector, settings or {})
            if interval <= 0 or s.scalar(select(InboxEvent.id).where(
                    InboxEvent.tenant_id == tenant_id, InboxEvent.type == "crm_sync",
                    InboxEvent.status == SYNC).limit(1)) is not None:
                continue  # polling off, or the previous sync is still reading
            slot = int(now.timestamp() // interval)
            key = f"sync:{slot}"
            row = {"tenant_id": tenant_id, "dedup_key": key, "type": "crm_sync",
                   "key": "", "contact_ref": "", "payload": {"interval": interval},
                   "status": SYNC, "attempts": 0, "error": "", "occurred_at": now,
                   "received_at": now}
            if insert_ignoring_conflicts(s, InboxEvent, [row], ["tenant_id", "dedup_key"]):
                s.execute(delete(InboxEvent).where(
                    InboxEvent.tenant_id == tenant_id, InboxEvent.type == "crm_sync",
                    InboxEvent.status != SYNC, InboxEvent.dedup_key != key))

    def _sync(self, row_id: int, tenant_id: int) -> None:
        """One tenant's share of syncing. Whatever goes wrong is that tenant's problem: it is
        recorded on its row and its slot, never raised into the pass other tenants share."""
        try:
            seen, done = sync_pages(self.rt, tenant_id, page_size=self.page_size,
                                    max_pages=self.pages_per_pass)
        except RetriableConnectorError as exc:
            self._later([row_id], str(exc), exc.retry_after)
            self._record_error(tenant_id, "sync delayed", exc)
            return
        except Exception as exc:  # noqa: BLE001 - a connector bug or a host's surprise
            log.warning("sync of tenant %s failed", tenant_id, exc_info=True, extra={"tenant_id": tenant_id})
            self._close(tenant_id, [row_id], [], "failed", _why(exc))
            self._record_error(tenant_id, "sync failed", exc)
            return
        now = self.rt.clock.now()
        with self.rt.db.unit_of_work() as s:
            row = s.get(InboxEvent, row_id)
            if row is None:
                return
            row.payload = {**(row.payload or {}), "read": int((row.payload or {}).get("read", 0)) + seen}
            row.lease_until = None  # not done: the next pass (any worker) reads on
            if done:
                row.status, row.processed_at = "done", now
                tenant = s.get(Tenant, tenant_id)
                if tenant is not None and tenant.connector_error:
                    tenant.connector_error, tenant.connector_error_at = None, None

    def _record_error(self, tenant_id: int, what: str, exc: BaseException) -> None:
        """On the tenant's row, in words its admin can act on (the detail is in the log)."""
        from crm_journeys.install_explain import describe

        with self.rt.db.unit_of_work() as s:
            tenant = s.get(Tenant, tenant_id)
            if tenant is not None:
                settings = tenant.settings or {}
                url = next((settings[k] for k in ("url", "base_url", "environment_url")
                            if settings.get(k)), None)
                advice = describe(tenant.connector, url, exc)
                tenant.connector_error = f"{what}: {advice}"[:2000]
                tenant.connector_error_at = self.rt.clock.now()


def _why(exc: BaseException) -> str:
    """The failure in words: a connector's own message, or the type of an unexpected one."""
    return str(exc) if isinstance(exc, ConnectorError) else f"{type(exc).__name__}: {exc}"

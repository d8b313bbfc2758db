"""Pulls contacts from the host CRM into the inbox as snapshots, resumably.

A snapshot's de-duplication key is (contact, record version), so reading a page twice,
or overlapping the incremental window, produces no second event; the mirror's diff then
derives what actually changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from crm_journeys.connectors.base import CanonicalContact
from crm_journeys.runtime.ingest import IncomingEvent, ingest_many
from crm_journeys.storage.models import Tenant

if TYPE_CHECKING:
    from crm_journeys.runtime.services import Runtime


def snapshot_event(contact: CanonicalContact) -> IncomingEvent:
    data: dict[str, Any] = asdict(contact)
    for key in ("created_at", "modified_at"):
        if data.get(key) is not None:
            data[key] = data[key].isoformat()
    version = contact.version or (contact.modified_at.isoformat() if contact.modified_at else "")
    return IncomingEvent(type="contact_deleted" if contact.deleted else "contact_upserted",
                         contact={"id": contact.external_id, "email": contact.email},
                         properties=data, occurred_at=contact.modified_at,
                         dedup_key=f"snap:{contact.external_id}:{version}" if version else None)


def sync_tenant(runtime: Runtime, tenant_id: int, *, page_size: int = 100,
                progress: Callable[[int, int | None], None] | None = None) -> int:
    """Read pages from the saved cursor until the host says done; returns contacts read."""
    seen, _ = sync_pages(runtime, tenant_id, page_size=page_size, progress=progress)
    return seen


def sync_pages(runtime: Runtime, tenant_id: int, *, page_size: int = 100,
               max_pages: int | None = None,
               progress: Callable[[int, int | None], None] | None = None) -> tuple[int, bool]:
    """Read at most ``max_pages`` pages from the saved cursor (the worker's bounded share);
    returns (contacts read, whether the host said done). Each page commits its events
    with the cursor after it, so a crash resumes where the last page ended."""
    connector = runtime.connector_for(tenant_id)
    with runtime.db.unit_of_work() as s:
        tenant = s.get(Tenant, tenant_id)
        assert tenant is not None
        cursor = tenant.sync_cursor
    seen = pages = 0
    while max_pages is None or pages < max_pages:
        page = connector.sync_page(cursor, page_size)
        pages += 1
        with runtime.db.unit_of_work() as s:
            ingest_many(s, tenant_id, [snapshot_event(c) for c in page.contacts], runtime.clock.now())
            tenant = s.get(Tenant, tenant_id)
            assert tenant is not None
            tenant.sync_cursor = page.cursor
        seen += len(page.contacts)
        cursor = page.cursor
        if progress:
            progress(seen, page.total)
        if page.done:
            return seen, True
    return seen, False

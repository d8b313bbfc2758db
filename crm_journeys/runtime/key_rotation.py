"""Re-encrypt every stored secret with the first of ``CRM_JOURNEYS_SECRET_KEY``'s keys.

Rotation is: put the new key first in the variable (the old one after it, so everything
still decrypts), run this (``crm-journeys db rotate-secrets``), then drop the old key.
Tenant credentials are ``encrypt_json`` tokens (``MultiFernet.rotate``); the sealed columns
are re-written through their type, which seals with the first key.
"""

from __future__ import annotations

from sqlalchemy import select, update

from crm_journeys.secrets import rotate
from crm_journeys.storage.db import Database
from crm_journeys.storage.models import Journey, Tenant


def rotate_all(db: Database) -> dict[str, int]:
    """How many tenants and journeys were re-encrypted."""
    counts = {"tenants": 0, "journeys": 0}
    with db.unit_of_work() as s:
        for tenant_id, credentials, webhook_secret in s.execute(
                select(Tenant.id, Tenant.credentials, Tenant.webhook_secret)).all():
            s.execute(update(Tenant).where(Tenant.id == tenant_id)
                      .values(credentials=rotate(credentials), webhook_secret=webhook_secret))
            counts["tenants"] += 1
        for journey_id, secret in s.execute(select(Journey.id, Journey.trigger_secret)).all():
            s.execute(update(Journey).where(Journey.id == journey_id).values(trigger_secret=secret))
            counts["journeys"] += 1
    return counts

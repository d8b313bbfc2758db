"""How the runtime addresses a mirrored contact when it ingests an event for it itself.

The inbox keys per-contact order by ``contact_ref``; events the runtime derives (dates,
lapses, segment entries, manual adds) must carry the same identity the contact's own
events do, or two workers could handle one contact at once.
"""

from __future__ import annotations

from typing import Any

from crm_journeys.storage.models import Contact


def contact_ident(contact: Contact) -> dict[str, Any]:
    """``{"id": external_id, "email": ...}``, or only the email for email-keyed contacts."""
    ext = contact.external_id or ""
    if ext.startswith("email:"):
        return {"email": contact.email or ext[6:]}
    out: dict[str, Any] = {"id": ext}
    if contact.email:
        out["email"] = contact.email
    return out

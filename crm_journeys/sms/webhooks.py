"""Twilio's status callbacks and inbound texts, as journey events and consent changes.

Runs inside the webhook's transaction once the signature checked out (``web.hooks.sms``).
A status callback finds its text by the idempotency key in its URL (``?k=``), else by
the sid; ``delivered`` becomes ``sms_delivered``, ``undelivered``/``failed``
``sms_not_delivered`` (with Twilio's error code as the reason; 21610 also records the
opt-out). An inbound text answers the latest text sent to its number: it becomes
``sms_replied`` for that contact, and STOP/START keywords change the SMS consent first.
Every event's de-duplication key is Twilio's own (sid and status), so a callback Twilio
repeats is one event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.orm import Session

from crm_journeys.runtime.ingest import IncomingEvent
from crm_journeys.sms import consent, store

log = logging.getLogger(__name__)
DELIVERED, NOT_DELIVERED = ("delivered", "read"), ("undelivered", "failed")
_RANK = {"not_sent": 0, "sending": 0, "accepted": 1, "scheduled": 1, "queued": 1, "sent": 3,
         "delivered": 4, "read": 5, "undelivered": 4, "failed": 4}


def status_events(s: Session, tenant_id: int, form: Mapping[str, str], key: str,
                  now: datetime) -> list[IncomingEvent]:
    sid, status = form.get("MessageSid") or form.get("SmsSid") or "", (form.get("MessageStatus") or "").lower()
    row = (store.by_key(s, tenant_id, key) if key else None) or (store.by_sid(s, tenant_id, sid) if sid else None)
    if row is None or not status:
        log.info("Twilio status %r for a text this tenant has no record of; ignored", status)
        return []
    row.sid = row.sid or sid
    if _RANK.get(status, 0) >= _RANK.get(row.status, 0):  # callbacks may arrive out of order
        row.status, row.updated_at = status, now
    error = form.get("ErrorCode") or ""
    if error:
        row.error = f"Twilio error {error}"
    if error == "21610":
        consent.opt_out(s, tenant_id, row.contact_id, now, source="twilio_21610")
    if status not in DELIVERED + NOT_DELIVERED:
        return []
    kind = "sms_delivered" if status in DELIVERED else "sms_not_delivered"
    props = {"sms_id": row.sms_id, "sid": row.sid or sid, "status": status}
    if kind == "sms_not_delivered":
        props["reason"] = f"Twilio error {error}" if error else status
    return [IncomingEvent(type=kind, key=row.sms_id, contact={"id": store.contact_ref(s, tenant_id, row.contact_id)},
                          properties=props, occurred_at=now, dedup_key=f"twilio:{row.sid or sid}:{kind}")]


def inbound_events(s: Session, tenant_id: int, form: Mapping[str, str], now: datetime) -> list[IncomingEvent]:
    sender, body = form.get("From") or "", form.get("Body") or ""
    replied_to = store.last_to(s, tenant_id, sender)
    if replied_to is None:
        log.info("a text from a number no journey texted; ignored")
        return []
    word = consent.keyword(body, form.get("OptOutType") or "")
    if word == "stop":
        consent.opt_out(s, tenant_id, replied_to.contact_id, now, source="sms_reply")
    elif word == "start":
        consent.opt_in(s, tenant_id, replied_to.contact_id, now, source="sms_reply")
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    props = {"sms_id": replied_to.sms_id, "body": body[:1600], "keyword": word, "sid": sid,
             "in_reply_to": replied_to.sid or ""}
    return [IncomingEvent(type="sms_replied", key=replied_to.sms_id,
                          contact={"id": store.contact_ref(s, tenant_id, replied_to.contact_id)},
                          properties=props, occurred_at=now, dedup_key=f"twilio:{sid}:sms_replied")]

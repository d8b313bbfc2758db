"""Delivery outcomes from an email service provider: SendGrid's signed Event Webhook.

Mail relayed through SendGrid carries the send's public id as a unique argument
(``X-SMTPAPI``), so each event names its send; events come back in batches, signed with
ECDSA (P-256, SHA-256) over the timestamp header followed by the raw body, with the
public key the tenant copied from SendGrid. Verified with ``cryptography``; a request
older than ten minutes is refused, so a captured request cannot be replayed later, and
each event's ``sg_event_id`` de-duplicates it within that window.

What they become: ``delivered`` -> ``email_delivered``; ``bounce`` / ``dropped`` ->
``email_not_delivered`` (a bounce suppresses the address); ``spamreport`` ->
``email_complained`` and an unsubscribe (source ``complaint``); ``unsubscribe`` /
``group_unsubscribe`` -> an unsubscribe (source ``esp``); ``open`` / ``click`` ->
``email_opened`` (``machine`` from SendGrid's ``sg_machine_open``) / ``email_clicked``.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_journeys.errors import WebhookRejected
from crm_journeys.runtime.consent import UNSUBSCRIBED, mark_bounced, set_consent
from crm_journeys.runtime.ingest import IncomingEvent, ingest
from crm_journeys.storage.mail_models import EmailSend
from crm_journeys.storage.models import Contact

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
WINDOW = timedelta(minutes=10)
SEND_ARG = "cj_send"  # the unique argument naming our send
TYPES = {"delivered": "email_delivered", "bounce": "email_not_delivered", "dropped": "email_not_delivered",
         "spamreport": "email_complained", "open": "email_opened", "click": "email_clicked"}
UNSUBSCRIBES = {"spamreport": "complaint", "unsubscribe": "esp", "group_unsubscribe": "esp"}


def verify(public_key_b64: str, headers: dict[str, str], body: bytes, now: datetime) -> None:
    """Raise ``WebhookRejected`` unless SendGrid signed this body recently."""
    signature, stamp = headers.get(SIGNATURE), headers.get(TIMESTAMP)
    if not public_key_b64:
        raise WebhookRejected("no SendGrid verification key is configured (setting sendgrid_public_key)")
    if not signature or not stamp or not stamp.isdigit():
        raise WebhookRejected(f"missing {SIGNATURE} or {TIMESTAMP}")
    if abs(now.timestamp() - int(stamp)) > WINDOW.total_seconds():
        raise WebhookRejected("timestamp outside the accepted window")
    try:
        key = load_der_public_key(base64.b64decode(public_key_b64))
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise WebhookRejected("the configured key is not an ECDSA key")
        key.verify(base64.b64decode(signature), stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, binascii.Error) as exc:
        raise WebhookRejected("signature does not verify") from exc


def store(session: Session, tenant_id: int, events: list[dict[str, Any]], now: datetime) -> int:
    """Apply and ingest a verified batch; returns how many events were for our sends."""
    used = 0
    for item in events:
        if not isinstance(item, dict):
            continue
        send = _send(session, tenant_id, item)
        contact = session.get(Contact, send.contact_id) if send is not None else None
        if send is None or contact is None:
            continue
        used += 1
        _apply(session, send, contact, item, now)
    return used


def _apply(session: Session, send: EmailSend, contact: Contact, item: dict[str, Any], now: datetime) -> None:
    kind = str(item.get("event") or "")
    if kind == "bounce":
        send.status = "bounced"
        mark_bounced(session, contact, str(item.get("reason") or "bounced"), now)
    if kind in UNSUBSCRIBES:
        set_consent(session, contact, "email", UNSUBSCRIBED, UNSUBSCRIBES[kind], now)
    if kind in TYPES:
        props = {"email_id": send.email_id, "journey_id": send.journey_id, "instance_id": send.instance_id,
                 "provider": "sendgrid", "reason": str(item.get("reason") or "")[:500]}
        if kind == "open":
            props["machine"] = bool(item.get("sg_machine_open"))
        if kind == "click":
            props["url"] = str(item.get("url") or "")
        ident = item.get("sg_event_id") or f"{send.public_id}:{kind}:{item.get('timestamp')}"
        ingest(session, send.tenant_id, IncomingEvent(type=TYPES[kind], key=send.email_id,
                                                      contact={"id": contact.external_id}, properties=props,
                                                      dedup_key=f"sendgrid:{ident}"), now)


def _send(session: Session, tenant_id: int, item: dict[str, Any]) -> EmailSend | None:
    public_id = item.get(SEND_ARG) or (item.get("unique_args") or {}).get(SEND_ARG)
    if not isinstance(public_id, str):
        return None
    return session.scalar(select(EmailSend).where(EmailSend.tenant_id == tenant_id, EmailSend.public_id == public_id))

"""SMS consent: channel ``sms`` of the per-contact consent model (``runtime.consent``).

What texts add to it: STOP-style replies and Twilio's error 21610 unsubscribe, START-style
replies subscribe again, both recorded with their source (``sms_reply``,
``twilio_21610``). The keywords are Twilio's default opt-out management keywords, so our
record agrees with what Twilio itself enforces on the number.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_journeys.runtime.consent import SUBSCRIBED, UNSUBSCRIBED, consent_of, set_consent
from crm_journeys.storage.models import Contact

CHANNEL = "sms"
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP", "OPTIN"})
HELP_WORDS = frozenset({"HELP", "INFO"})


def keyword(body: str, opt_out_type: str = "") -> str:
    """``stop``, ``start``, ``help`` or ``""``: Twilio's ``OptOutType`` when it sent one
    (Advanced Opt-Out), else the reply is exactly one of the default keywords."""
    if opt_out_type.upper() in ("STOP", "START", "HELP"):
        return opt_out_type.lower()
    word = body.strip().strip(".!").upper()
    if word in OPT_OUT_WORDS:
        return "stop"
    if word in OPT_IN_WORDS:
        return "start"
    return "help" if word in HELP_WORDS else ""


def sms_refusal(s: Session, tenant_id: int, contact_id: int) -> str | None:
    """Why a marketing text may not go to the contact, or None."""
    refusal = consent_of(s, tenant_id, contact_id, CHANNEL).refusal(marketing=True)
    if refusal is None:
        return None
    return refusal.removeprefix("skipped: ").replace("unsubscribed", "unsubscribed from SMS", 1)


def opt_out(s: Session, tenant_id: int, contact_id: int, now: datetime, *, source: str) -> bool:
    return _set(s, tenant_id, contact_id, UNSUBSCRIBED, now, source)


def opt_in(s: Session, tenant_id: int, contact_id: int, now: datetime, *, source: str) -> bool:
    return _set(s, tenant_id, contact_id, SUBSCRIBED, now, source)


def _set(s: Session, tenant_id: int, contact_id: int, status: str, now: datetime, source: str) -> bool:
    contact = s.scalar(select(Contact).where(Contact.tenant_id == tenant_id, Contact.id == contact_id))
    if contact is None:
        return False
    return set_consent(s, contact, CHANNEL, status, source, now)

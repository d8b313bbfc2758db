"""Email preview and test send for a journey's ``send_email`` step (the builder's panel and the API).

The preview renders the step's subject and body for a chosen contact of the mirror (or a
sample one) exactly as the send would, minus the signed links, which only a real send
makes. A test send goes to the editor's own address (or ``to``), its subject marked
``[Test]`` and an ``X-CRM-Journeys-Test`` header; it records no send, no consent and no
event, and is never tracked.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from sqlalchemy import select

from crm_journeys.actions.base import ActionContext, ContactView
from crm_journeys.actions.email import POLICY
from crm_journeys.actions.smtp import deliver
from crm_journeys.actions.templating import render
from crm_journeys.actions.tracking import build_body
from crm_journeys.auth.accounts import Principal
from crm_journeys.errors import ConnectorError
from crm_journeys.services import queries
from crm_journeys.storage.auth_models import User
from crm_journeys.storage.models import Contact
from crm_journeys.web.errors import ApiError
from crm_journeys.web.state import state

SAMPLE = ContactView(0, "sample", "jane.doe@example.com", {"first_name": "Jane", "last_name": "Doe"}, [])


def preview(principal: Principal, journey_id: int, step_id: str, contact_id: int | None) -> dict[str, Any]:
    """The step's email as ``contact_id`` would get it."""
    params, contact = _step_and_contact(principal, journey_id, step_id, contact_id)
    return _rendered(params, contact, principal.tenant_id)[0]


def test_send(principal: Principal, journey_id: int, step_id: str, contact_id: int | None,
              to: str | None) -> dict[str, Any]:
    params, contact = _step_and_contact(principal, journey_id, step_id, contact_id)
    to = to or _own_address(principal)
    out, msg = _rendered(params, contact, principal.tenant_id)
    settings = state().runtime.action_settings(principal.tenant_id)
    if not settings.get("smtp_url"):
        raise ApiError(409, "no_smtp", "a test send needs SMTP: set the smtp_url setting")
    msg.replace_header("Subject", f"[Test] {out['subject']}")
    msg.replace_header("To", to)
    msg["X-CRM-Journeys-Test"] = "yes"
    try:
        deliver(settings["smtp_url"], msg, settings)
    except ConnectorError as exc:
        raise ApiError(502, "smtp_failed", str(exc)) from None
    except Exception as exc:  # a hard bounce of the editor's own address, say
        raise ApiError(502, "smtp_failed", f"SMTP refused the test send: {exc}") from None
    return {**out, "subject": f"[Test] {out['subject']}", "to": to, "sent_to": to}


def _step_and_contact(principal: Principal, journey_id: int, step_id: str,
                      contact_id: int | None) -> tuple[dict[str, Any], ContactView]:
    with state().db.unit_of_work() as s:
        draft = queries.journey(s, principal.tenant_id, journey_id).draft
        step = next((st for st in draft.get("steps") or [] if st.get("id") == step_id), None)
        if step is None or step.get("action") != "send_email":
            raise ApiError(404, "not_found", f"step_id: no send_email step {step_id!r} in this journey's draft")
        contact = SAMPLE
        if contact_id is not None:
            row = s.scalar(select(Contact).where(Contact.tenant_id == principal.tenant_id, Contact.id == contact_id))
            if row is None:
                raise ApiError(404, "not_found", f"contact_id: no contact {contact_id}")
            contact = ContactView(row.id, row.external_id, row.email, dict(row.fields or {}), list(row.tags or []))
    params = dict(step.get("params") or {})
    if not isinstance(params.get("subject"), str) or not isinstance(params.get("body"), str):
        raise ApiError(422, "invalid", "params: the step needs a subject and a body to preview")
    return params, contact


def _rendered(params: dict[str, Any], contact: ContactView, tenant_id: int) -> tuple[dict[str, Any], EmailMessage]:
    ctx = ActionContext(tenant_id=tenant_id, connector=None, contact=contact,  # type: ignore[arg-type]
                        idempotency_key="preview", now=state().runtime.clock.now(), outbox_id=0, journey_id=None,
                        emit=lambda _: None)
    try:
        subject, text = render(params["subject"], ctx), render(params["body"], ctx)
        html = render(params["body"], ctx, autoescape=True)
    except ConnectorError as exc:
        raise ApiError(422, "template_error", f"params: {exc}") from None
    marketing = params.get("kind", "marketing") == "marketing"
    body = build_body(text, html, tracked_url=None, pixel_url=None,
                      unsubscribe_url="https://unsubscribe.link/made-at-send" if marketing else None)
    msg = EmailMessage(policy=POLICY)
    msg["Subject"], msg["To"] = subject, contact.email or ""
    msg["From"] = params.get("from_address") or state().runtime.action_settings(tenant_id).get("mail_from")
    msg.set_content(body.text)
    msg.add_alternative(body.html, subtype="html")
    return {"to": contact.email or "", "subject": subject, "text": body.text, "html": body.html,
            "marketing": marketing, "sent_to": ""}, msg


def _own_address(principal: Principal) -> str:
    if principal.user_id is None:
        raise ApiError(422, "invalid", "to: an API token has no address of its own; give one")
    with state().db.unit_of_work() as s:
        email = s.scalar(select(User.email).where(User.id == principal.user_id, User.tenant_id == principal.tenant_id))
    if not email:
        raise ApiError(422, "invalid", "to: your user has no address; give one")
    return str(email)

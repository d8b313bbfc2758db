"""Send a personalised email, through SMTP when configured, else through the CRM.

The subject and body are Jinja2 templates rendered in the sandbox. SMTP delivery
carries the idempotency key as the Message-ID, so a retried send is recognisable, but a
mail server does not drop it: an SMTP send reports itself not idempotent and the outbox
closes its row right after it. The connector path uses the host's own idempotent send or
log (one record per key), so its row may be closed with the rest of its batch.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import urlsplit

from marshmallow import ValidationError, fields, validate, validates

from crm_journeys.actions.base import Action, ActionContext, ActionResult, ParamsSchema
from crm_journeys.actions.templating import check_template, render
from crm_journeys.connectors.base import EmailSpec
from crm_journeys.errors import FatalConnectorError, RetriableConnectorError


class SendEmailParamsSchema(ParamsSchema):
    subject = fields.String(required=True, validate=validate.Length(min=1, max=300), metadata={"label": "Subject"})
    body = fields.String(required=True, validate=validate.Length(min=1), metadata={"label": "Message", "widget": "textarea"})
    email_id = fields.String(load_default=None, validate=validate.Regexp(r"^[A-Za-z0-9_\-]{1,80}$"),
                             metadata={"label": "Email name (for opens and clicks)"})
    from_address = fields.Email(load_default=None, metadata={"label": "From"})

    @validates("subject")
    def _subject(self, value: str, **_: Any) -> None:
        _template_ok(value)

    @validates("body")
    def _body(self, value: str, **_: Any) -> None:
        _template_ok(value)


def _template_ok(value: str) -> None:
    error = check_template(value)
    if error:
        raise ValidationError(f"template error: {error}")


class SendEmail(Action[dict[str, Any]]):
    name, label, params_schema = "send_email", "Send email", SendEmailParamsSchema

    @classmethod
    def host(cls, raw_params: dict[str, Any]) -> str:
        return "smtp"

    def execute(self, ctx: ActionContext, params: dict[str, Any]) -> ActionResult:
        if not ctx.contact.email:
            raise FatalConnectorError("the contact has no email address")
        spec = EmailSpec(subject=render(params["subject"], ctx), text=render(params["body"], ctx),
                         html=render(params["body"], ctx, autoescape=True),
                         from_address=params["from_address"], email_id=params["email_id"])
        smtp_url = ctx.settings.get("smtp_url")
        if smtp_url:
            _send_smtp(smtp_url, ctx, spec)  # a second send is a second email: not idempotent
            external_id = None
        else:
            external_id = ctx.connector.send_email(ctx.contact_ref, spec, idempotency_key=ctx.idempotency_key).external_id
        _emit_sent(ctx, spec)
        return ActionResult.done(f"sent {spec.subject!r} to {ctx.contact.email}", external_id,
                                 idempotent=not smtp_url)


def _send_smtp(url: str, ctx: ActionContext, spec: EmailSpec) -> None:
    parts = urlsplit(url)  # smtp://user:pass@host:port
    msg = EmailMessage()
    msg["Subject"] = spec.subject
    msg["From"] = spec.from_address or ctx.settings.get("mail_from", "journeys@localhost")
    msg["To"] = ctx.contact.email
    msg["Message-ID"] = make_msgid(idstring=ctx.idempotency_key.replace(":", "."), domain="crm-journeys")
    msg["X-CRM-Journeys-Key"] = ctx.idempotency_key
    msg.set_content(spec.text)
    msg.add_alternative(f"<html><body>{spec.html}</body></html>", subtype="html")
    try:
        with smtplib.SMTP(parts.hostname or "127.0.0.1", parts.port or 25, timeout=10) as smtp:
            if parts.username:
                smtp.login(parts.username, parts.password or "")
            smtp.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        raise FatalConnectorError(f"recipient refused: {exc.recipients}") from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise RetriableConnectorError(f"SMTP delivery failed: {exc}") from exc


def _emit_sent(ctx: ActionContext, spec: EmailSpec) -> None:
    from crm_journeys.runtime.ingest import IncomingEvent

    ctx.emit(IncomingEvent(type="email_sent", key=spec.email_id or "", contact={"id": ctx.contact.external_id},
                           properties={"subject": spec.subject}, dedup_key=f"sent:{ctx.idempotency_key}"))

"""Send a personalised email, through SMTP when configured, else through the CRM.

The subject and body are Jinja2 templates rendered in the sandbox. A marketing email
(the default) is skipped for a contact who unsubscribed, with the reason in the journey's
timeline, and the journey goes on; a transactional one (an order notification) ignores
marketing consent. Nothing goes to an address that hard-bounced.

Sent through SMTP with a public URL configured, a marketing email carries the one-click
unsubscribe headers of RFC 8058 and a visible link to the preferences page, and (unless
tracking is off for the step or the tenant) an open pixel and tracked links; all are
signed tokens naming only the send's random id (``runtime.mail_tokens``). When the host
CRM sends the email instead, its own engagement events flow through the connector.

SMTP delivery carries the idempotency key as the Message-ID, so a retried send is
recognisable, but a mail server does not drop it: an SMTP send reports itself not
idempotent and the outbox closes its row right after it.
"""

from __future__ import annotations

import json
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid
from typing import Any

from marshmallow import ValidationError, fields, validate, validates

from crm_journeys.actions.base import Action, ActionContext, ActionResult, HoldUntil, ParamsSchema
from crm_journeys.actions.smtp import HardBounce, SmtpPool, deliver
from crm_journeys.actions.templating import check_template, render
from crm_journeys.actions.tracking import Body, build_body, find_links
from crm_journeys.connectors.base import EmailSpec
from crm_journeys.errors import FatalConnectorError

# RFC 5322's line limit: a List-Unsubscribe URL has no spaces to fold at, and at the
# default 78 it would be sent as an encoded word that mail providers do not read as a URL.
POLICY = SMTP.clone(max_line_length=998)


class SendEmailParamsSchema(ParamsSchema):
    subject = fields.String(required=True, validate=validate.Length(min=1, max=300), metadata={"label": "Subject"})
    body = fields.String(required=True, validate=[validate.Length(min=1), validate.Length(max=100_000)], metadata={"label": "Message", "widget": "textarea"})
    email_id = fields.String(load_default=None, validate=validate.Regexp(r"^[A-Za-z0-9_\-]{1,80}$"),
                             metadata={"label": "Email name (for opens and clicks)"})
    from_address = fields.Email(load_default=None, metadata={"label": "From"})
    kind = fields.String(load_default="marketing", validate=validate.OneOf(["marketing", "transactional"]),
                         metadata={"label": "Kind (transactional ignores marketing consent)"})
    track = fields.Boolean(load_default=True, metadata={"label": "Track opens and clicks"})
    over_cap = fields.String(load_default="skip", validate=validate.OneOf(["skip", "hold"]),
                             metadata={"label": "Over the contact policy's cap: skip or hold"})

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
        smtp_url = ctx.settings.get("smtp_url")
        marketing = params.get("kind", "marketing") == "marketing"
        spec = EmailSpec(subject=render(params["subject"], ctx), text=render(params["body"], ctx),
                         html=render(params["body"], ctx, autoescape=True),
                         from_address=params["from_address"], email_id=params["email_id"])
        trackable = bool(smtp_url and marketing and params.get("track", True) and ctx.settings.get("email_tracking")
                         and ctx.settings.get("public_url"))
        prepared = _prepare(ctx, params, marketing, trackable, find_links(spec.text))
        if prepared is not None and prepared.hold_until is not None:
            raise HoldUntil(prepared.hold_until, prepared.hold_reason)
        if prepared is not None and prepared.skip_reason:
            return ActionResult.done(prepared.skip_reason, idempotent=True, skipped=True)
        if not smtp_url:
            try:
                external_id = ctx.connector.send_email(ctx.contact_ref, spec,
                                                       idempotency_key=ctx.idempotency_key).external_id
            except NotImplementedError as exc:  # the host cannot send email: retrying cannot help
                raise FatalConnectorError(f"{exc}; set an SMTP server (smtp_url)") from None
            _emit_sent(ctx, spec)
            return ActionResult.done(f"sent {spec.subject!r} to {ctx.contact.email}", external_id, idempotent=True)
        earlier = _earlier_attempt(ctx, prepared)
        if earlier is not None:
            return earlier
        tracked = bool(prepared and prepared.tracked)
        _send_smtp(ctx, smtp_url, spec, prepared.public_id if prepared else "", tracked, marketing)
        _emit_sent(ctx, spec)
        return ActionResult.done(f"sent {spec.subject!r} to {ctx.contact.email}"
                                 + ("" if tracked or not marketing else " (not tracked)"), idempotent=False)


def _earlier_attempt(ctx: ActionContext, prepared: Any) -> ActionResult | None:
    """Exactly once, or marked: an SMTP send cannot be asked whether it happened, so its
    row says how far the last attempt got. ``sent``: done already (the worker stopped
    before closing the outbox row), not sent again. ``sending``: the attempt stopped
    mid-send and the message may have gone out; the row is dead-lettered saying so
    (marked ``uncertain``), and a retry by hand sends it. ``queued`` or ``uncertain``: a
    failed attempt or a person's retry: send."""
    earlier = prepared.earlier if prepared is not None else None
    if earlier is None:
        return None
    if earlier.status == "sent":
        return ActionResult.done(f"already sent to {ctx.contact.email} on {earlier.sent_at:%Y-%m-%d %H:%M} UTC; "
                                 "not sent again", idempotent=True)
    public_id = earlier.public_id
    if earlier.status == "sending":
        _record(ctx, lambda s, now: _mark(s, ctx, public_id, "uncertain"))
        raise FatalConnectorError("an earlier attempt stopped while sending (the worker stopped), so this "
                                  "email may already have been delivered; check the mail server's log, "
                                  "and retry by hand to send it again")
    _record(ctx, lambda s, now: _mark(s, ctx, public_id, "sending"))
    return None


def _send_smtp(ctx: ActionContext, url: str, spec: EmailSpec, public_id: str, tracked: bool, marketing: bool) -> None:
    """Build and deliver (a second send is a second email: not idempotent); a recipient
    5xx suppresses the address and dead-letters the row; any other failure means the
    server did not take the message, so the row goes back to ``queued``."""
    links = _links(ctx, public_id, tracked, marketing)
    body = build_body(spec.text, spec.html, **links)
    try:
        pool = ctx.pass_cache.setdefault("smtp", SmtpPool())
        deliver(url, _message(ctx, spec, body, links.get("unsubscribe_url"), public_id), ctx.settings, pool)
    except HardBounce as exc:
        reason = str(exc)
        _record(ctx, lambda s, now: _bounce(s, ctx, public_id, reason, now))
        raise FatalConnectorError(f"hard bounce: {reason}") from exc
    except Exception:
        _record(ctx, lambda s, now: _mark(s, ctx, public_id, "queued"))
        raise
    _record(ctx, lambda s, now: _sent(s, ctx, public_id, now))


def _prepare(ctx: ActionContext, params: dict[str, Any], marketing: bool, tracked: bool, links: list[str]) -> Any:
    """The send's row and the consent check (None when run without the runtime)."""
    if ctx.services is None:
        return None
    from crm_journeys.runtime.contact_policy import Policy
    from crm_journeys.runtime.mailing import Origin, prepare

    policy = Policy.from_settings(ctx.settings.get("contact_policy"))
    with ctx.services.db.unit_of_work() as s:
        origin = Origin(ctx.outbox_id, ctx.instance_id, ctx.step, ctx.journey_id, ctx.version_id)
        return prepare(s, tenant_id=ctx.tenant_id, contact_id=ctx.contact.id, origin=origin,
                       key=ctx.idempotency_key, email_id=params.get("email_id") or "", marketing=marketing,
                       tracked=tracked, links=links, now=ctx.now, policy=policy, contact_zone=ctx.contact.fields.get("time_zone"),
                       over_cap=params.get("over_cap", "skip"))


def _links(ctx: ActionContext, public_id: str, tracked: bool, marketing: bool) -> dict[str, Any]:
    from crm_journeys.runtime.mail_tokens import make_token

    base = ctx.settings.get("public_url") or ""
    if not base or not public_id:
        return {"tracked_url": None, "pixel_url": None, "unsubscribe_url": None}
    tenant, now = ctx.tenant_id, ctx.now
    return {"tracked_url": (lambda i: f"{base}/m/c/{make_token('click', tenant, public_id, i, now=now)}")
            if tracked else None,
            "pixel_url": f"{base}/m/o/{make_token('open', tenant, public_id, now=now)}.gif" if tracked else None,
            "unsubscribe_url": f"{base}/m/u/{make_token('unsubscribe', tenant, public_id, now=now)}"
            if marketing else None}


def _message(ctx: ActionContext, spec: EmailSpec, body: Body, unsubscribe_url: str | None,
             public_id: str) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    msg["Subject"] = spec.subject
    msg["From"] = spec.from_address or ctx.settings.get("mail_from", "journeys@localhost")
    msg["To"] = ctx.contact.email
    msg["Message-ID"] = make_msgid(idstring=ctx.idempotency_key.replace(":", "."), domain="crm-journeys")
    msg["X-CRM-Journeys-Key"] = ctx.idempotency_key
    if public_id:  # SendGrid echoes unique arguments in its Event Webhook (runtime.esp_events)
        msg["X-SMTPAPI"] = json.dumps({"unique_args": {"cj_send": public_id}})
    if unsubscribe_url:  # RFC 8058 one-click unsubscribe (required of bulk senders)
        msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(body.text)
    msg.add_alternative(body.html, subtype="html")
    return msg


def _record(ctx: ActionContext, write: Any) -> None:
    if ctx.services is not None:
        with ctx.services.db.unit_of_work() as s:
            write(s, ctx.now)


def _sent(s: Any, ctx: ActionContext, public_id: str, now: Any) -> None:
    from crm_journeys.runtime.mailing import mark_sent

    mark_sent(s, ctx.tenant_id, public_id, now)


def _mark(s: Any, ctx: ActionContext, public_id: str, status: str) -> None:
    from crm_journeys.runtime.mailing import mark_status

    mark_status(s, ctx.tenant_id, public_id, status)


def _bounce(s: Any, ctx: ActionContext, public_id: str, reason: str, now: Any) -> None:
    from crm_journeys.runtime.mailing import mark_hard_bounce

    mark_hard_bounce(s, ctx.tenant_id, public_id, ctx.contact.id, reason, now)


def _emit_sent(ctx: ActionContext, spec: EmailSpec) -> None:
    from crm_journeys.runtime.ingest import IncomingEvent

    ctx.emit(IncomingEvent(type="email_sent", key=spec.email_id or "", contact={"id": ctx.contact.external_id},
                           properties={"subject": spec.subject}, dedup_key=f"sent:{ctx.idempotency_key}"))

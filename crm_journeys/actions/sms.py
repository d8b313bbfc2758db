"""Send a text through Twilio, exactly once per idempotency key, only to who may get it.

The body is a Jinja2 template rendered in the same sandbox as email. The contact's
number is normalised to E.164 (``sms.phone``) with the contact's country; one that cannot
be read fails the row at once with the reason. A marketing text to a contact who opted
out of SMS is skipped, its reason in the result and the contact's timeline.

Twilio takes no idempotency key, so the action keeps one: a local row per key
(``cj_sms_message``) is written before Twilio is asked. A retry finds Twilio's sid there
and sends nothing; an attempt whose answer was lost is looked up on Twilio (by number,
time and the body's hash) before sending again; a 429 created nothing and is retried as
``Retry-After`` says. The status callback URL carries the key (``?k=``), so Twilio's
callbacks find the row even when the send's own answer was lost.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlencode

from marshmallow import ValidationError, fields, validate, validates

from crm_journeys.actions.base import Action, ActionContext, ActionResult, HoldUntil, ParamsSchema
from crm_journeys.actions.templating import check_template, render
from crm_journeys.errors import FatalConnectorError
from crm_journeys.sms import consent, store, twilio
from crm_journeys.sms.phone import BadNumber, contact_number
from crm_journeys.sms.segments import count_segments

MAX_SEGMENTS = 10  # Twilio's advice: past 10 segments, send a link instead


class SendSmsParamsSchema(ParamsSchema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=1600),
                         metadata={"label": "Message", "widget": "sms"})
    sms_id = fields.String(load_default="", validate=validate.Regexp(r"^[A-Za-z0-9_\-]{0,80}$"),
                           metadata={"label": "Text name (for delivered, not delivered and replied)"})
    kind = fields.String(load_default="marketing", validate=validate.OneOf(["marketing", "transactional"]),
                         metadata={"label": "Kind (a marketing text is skipped for a contact who opted out of SMS)"})
    over_cap = fields.String(load_default="skip", validate=validate.OneOf(["skip", "hold"]),
                             metadata={"label": "Over the contact policy's cap: skip the text or hold it"})

    @validates("body")
    def _body(self, value: str, **_: Any) -> None:
        error = check_template(value)
        if error:
            raise ValidationError(f"template error: {error}")


class SendSms(Action[dict[str, Any]]):
    """Text the journey's contact through the tenant's Twilio account."""

    name, label, params_schema = "send_sms", "Send SMS", SendSmsParamsSchema
    description = "A text message through Twilio; replies and delivery reports come back as events."

    def execute(self, ctx: ActionContext, params: dict[str, Any]) -> ActionResult:
        dry_run = bool(ctx.settings.get("dry_run"))  # test mode: a throw-away world, no Twilio
        cfg = _config(ctx, dry_run)
        try:
            number = contact_number(ctx.contact.fields, cfg.default_region or None)
        except BadNumber as exc:
            raise FatalConnectorError(str(exc)) from exc
        body = render(params["body"], ctx).strip()
        if not body:
            raise FatalConnectorError("the message is empty once rendered for this contact")
        count = count_segments(body)
        if count.segments > MAX_SEGMENTS:
            raise FatalConnectorError(f"the message is {count.segments} segments long; at most {MAX_SEGMENTS}")
        earlier = _earlier_status(ctx)
        if earlier == store.SKIPPED:  # a re-run of a row whose close was lost
            return ActionResult.done("skipped earlier", idempotent=True, skipped=True)
        if params["kind"] == "marketing" and earlier in (None, store.NOT_SENT):
            refusal = _refusal(ctx) or _policy(ctx, params)
            if refusal:
                return _skipped(ctx, number, params, refusal)
        if dry_run:
            _emit_sent(ctx, params["sms_id"], "", count.segments)
            return ActionResult.done(f"would text {_masked(number)} ({count.segments} segment(s)): {body}",
                                     idempotent=True)
        return _send_once(ctx, cfg, number, body, params, count.segments)


def _config(ctx: ActionContext, dry_run: bool) -> twilio.TwilioConfig:
    raw = ctx.settings.get("sms") or {}
    if dry_run and not raw.get("account_sid"):
        return twilio.TwilioConfig(account_sid="dry-run", default_region=str(raw.get("default_region") or ""))
    return twilio.TwilioConfig.from_settings(raw)


def _earlier_status(ctx: ActionContext) -> str | None:
    with ctx.services.db.unit_of_work() as s:
        row = store.by_key(s, ctx.tenant_id, ctx.idempotency_key)
        return row.status if row is not None else None


def _refusal(ctx: ActionContext) -> str | None:
    with ctx.services.db.unit_of_work() as s:
        return consent.sms_refusal(s, ctx.tenant_id, ctx.contact.id)


def _policy(ctx: ActionContext, params: dict[str, Any]) -> str | None:
    """The tenant's contact policy (quiet hours, cap across channels), as for email: a
    reason to skip, None to send, or ``HoldUntil`` (the outbox runs the row again then,
    without counting an attempt; the timeline says why)."""
    from crm_journeys.runtime.contact_policy import Policy, judge, version_setting

    policy = Policy.from_settings(ctx.settings.get("contact_policy"))
    with ctx.services.db.unit_of_work() as s:
        verdict = judge(s, policy, tenant_id=ctx.tenant_id, contact_id=ctx.contact.id,
                        contact_zone=ctx.contact.fields.get("time_zone"), outbox_id=ctx.outbox_id,
                        priority=int(version_setting(s, ctx.version_id, "priority", 50)),
                        over_cap=params["over_cap"], now=ctx.now)
        if verdict.action == "hold":
            store.log_step(s, ctx.tenant_id, ctx.outbox_id, ctx.journey_id, "held",
                           f"{verdict.reason} (send_sms)", ctx.now)
    if verdict.action == "hold" and verdict.until is not None:  # raised once the note is committed
        raise HoldUntil(verdict.until, verdict.reason)
    if verdict.action == "skip":
        return verdict.reason.removeprefix("skipped: ")
    return None


def _skipped(ctx: ActionContext, number: str, params: dict[str, Any], reason: str) -> ActionResult:
    now = ctx.now
    with ctx.services.db.unit_of_work() as s:
        store.begin(s, ctx.tenant_id, ctx.idempotency_key, now, contact_id=ctx.contact.id,
                    journey_id=ctx.journey_id, sms_id=params["sms_id"], to_number=number)
        store.settle(s, ctx.tenant_id, ctx.idempotency_key, now, status=store.SKIPPED, error=reason)
        store.log_step(s, ctx.tenant_id, ctx.outbox_id, ctx.journey_id, "skipped", f"{reason} (send_sms not sent)", now)
    return ActionResult.done(f"skipped: {reason}", idempotent=True, skipped=True, reason=reason)


def _send_once(ctx: ActionContext, cfg: twilio.TwilioConfig, number: str, body: str,
               params: dict[str, Any], segments: int) -> ActionResult:
    digest = hashlib.sha256(body.encode()).hexdigest()
    found = _earlier_attempt(ctx, cfg, number, digest)
    if found is not None:
        return _sent(ctx, number, found, params, segments, again=True)
    with ctx.services.db.unit_of_work() as s:
        store.begin(s, ctx.tenant_id, ctx.idempotency_key, ctx.now, contact_id=ctx.contact.id,
                    journey_id=ctx.journey_id, sms_id=params["sms_id"], to_number=number,
                    body_sha256=digest, segments=segments, marketing=params["kind"] == "marketing")
    try:
        message = twilio.send(cfg, number, body, _status_callback(cfg, ctx))
    except twilio.NotCreated:
        _settle(ctx, store.NOT_SENT)
        raise
    except twilio.Unsubscribed as exc:
        return _opted_out_at_twilio(ctx, number, params, str(exc))
    except twilio.MaybeSent:
        raise  # the row stays "sending": the retry looks it up first
    except FatalConnectorError as exc:
        _settle(ctx, "failed", error=str(exc))
        raise
    return _sent(ctx, number, message, params, segments)


def _earlier_attempt(ctx: ActionContext, cfg: twilio.TwilioConfig, number: str,
                     digest: str) -> dict[str, Any] | None:
    """Twilio's message for this key if an earlier attempt created one, else None."""
    with ctx.services.db.unit_of_work() as s:
        row = store.by_key(s, ctx.tenant_id, ctx.idempotency_key)
        if row is None or row.status == store.NOT_SENT:
            return None
        if row.sid:
            return {"sid": row.sid, "status": row.status, "num_segments": row.segments}
        since, status = row.attempted_at or row.created_at, row.status
    if status != store.ATTEMPT_UNKNOWN:
        return None
    return twilio.find_sent(cfg, number, since, digest)


def _sent(ctx: ActionContext, number: str, message: dict[str, Any], params: dict[str, Any],
          segments: int, *, again: bool = False) -> ActionResult:
    sid = str(message.get("sid") or "")
    status = str(message.get("status") or "queued")
    parts = int(message.get("num_segments") or segments)
    with ctx.services.db.unit_of_work() as s:
        row = store.by_key(s, ctx.tenant_id, ctx.idempotency_key)
        keep = row is not None and row.status in store.FINAL  # a callback got there first
        store.settle(s, ctx.tenant_id, ctx.idempotency_key, ctx.now, sid=sid, segments=parts,
                     status=row.status if keep and row else status)
    _emit_sent(ctx, params["sms_id"], sid, parts)
    verb = "already sent" if again else "sent"
    return ActionResult.done(f"{verb} SMS ({parts} segment{'s' if parts != 1 else ''}) to {_masked(number)}",
                             sid, idempotent=True, segments=parts)


def _opted_out_at_twilio(ctx: ActionContext, number: str, params: dict[str, Any], reason: str) -> ActionResult:
    """Twilio 21610: the number replied STOP to this sender; remember it as an SMS opt-out."""
    why = "the recipient has unsubscribed from texts (Twilio 21610)"
    with ctx.services.db.unit_of_work() as s:
        consent.opt_out(s, ctx.tenant_id, ctx.contact.id, ctx.now, source="twilio_21610")
        store.settle(s, ctx.tenant_id, ctx.idempotency_key, ctx.now, status=store.SKIPPED, error=reason)
        store.log_step(s, ctx.tenant_id, ctx.outbox_id, ctx.journey_id, "skipped", f"{why} (send_sms not sent)",
                       ctx.now)
    return ActionResult.done(f"skipped: {why}", idempotent=True, skipped=True, reason=why)


def _settle(ctx: ActionContext, status: str, error: str = "") -> None:
    with ctx.services.db.unit_of_work() as s:
        store.settle(s, ctx.tenant_id, ctx.idempotency_key, ctx.now, status=status, error=error)


def _status_callback(cfg: twilio.TwilioConfig, ctx: ActionContext) -> str | None:
    """Where Twilio reports the text's progress: the Twilio settings' public address, else
    the one this service uses for its email links (``public_url``); none, no callbacks."""
    slug = (ctx.settings.get("sms") or {}).get("tenant_slug")
    base = cfg.public_url or str(ctx.settings.get("public_url") or "")
    if not base or not slug:
        return None
    return f"{base.rstrip('/')}/hooks/{slug}/twilio/status?{urlencode({'k': ctx.idempotency_key})}"


def _emit_sent(ctx: ActionContext, sms_id: str, sid: str, segments: int) -> None:
    from crm_journeys.runtime.ingest import IncomingEvent

    ctx.emit(IncomingEvent(type="sms_sent", key=sms_id, contact={"id": ctx.contact.external_id},
                           properties={"sms_id": sms_id, "sid": sid, "segments": segments},
                           dedup_key=f"sent:{ctx.idempotency_key}"))


def _masked(number: str) -> str:
    """Enough of the number to recognise it in the outbox view, not to copy it."""
    return number[:4] + "…" + number[-2:] if len(number) > 6 else number

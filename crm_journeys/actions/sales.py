"""Hand work to the sales team: leads, tasks, phone calls and appointments in the CRM.

Each is a record the host keeps once per idempotency key, so results say ``idempotent``.
Owners arrive as the host's ids (emails were resolved when the journey was published,
``runtime/owners.py``), or as ``contact_owner``: whoever owns the contact when the action
runs, read from the contact mirror.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from crm_journeys.actions.base import Action, ActionContext, ActionResult, ParamsSchema
from crm_journeys.connectors.base import CONTACT_OWNER, ActivitySpec, LeadSpec

OWNER_HELP = (f"An owner's email or CRM id (checked when the journey is published), or "
              f"{CONTACT_OWNER!r} for the contact's own owner.")


class LeadParamsSchema(ParamsSchema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=200), metadata={"label": "Lead title"})
    owner = fields.String(load_default=None, metadata={"label": "Owner", "picker": "owners",
                                                       "help": OWNER_HELP})
    value = fields.Float(load_default=None, metadata={"label": "Estimated value"})
    description = fields.String(load_default="", metadata={"label": "Notes"})


class CreateLead(Action[dict[str, Any]]):
    name, label, params_schema = "create_lead", "Create lead", LeadParamsSchema

    def execute(self, ctx: ActionContext, params: dict[str, Any]) -> ActionResult:
        spec = LeadSpec(title=_render(ctx, params["title"]), owner=owner_for(ctx, params["owner"]), value=params["value"],
                        description=_render(ctx, params["description"]))
        result = ctx.connector.create_lead(ctx.contact_ref, spec, idempotency_key=ctx.idempotency_key)
        return ActionResult.done(_lead_summary(spec.title, result.created, result.detail),
                                 result.external_id, idempotent=True)


class ActivityParamsSchema(ParamsSchema):
    subject = fields.String(required=True, validate=validate.Length(min=1, max=200), metadata={"label": "Subject"})
    owner = fields.String(load_default=None, metadata={"label": "Assign to", "picker": "owners",
                                                       "help": OWNER_HELP})
    owners = fields.List(fields.String(), load_default=list,
                         metadata={"label": "Or round-robin over", "picker": "owners",
                                   "help": "Each new activity goes to the next of these."})
    due_in_days = fields.Integer(load_default=1, validate=validate.Range(0, 365), metadata={"label": "Due in (days)"})
    business_days = fields.Boolean(load_default=False, metadata={"label": "Count business days only"})
    description = fields.String(load_default="", metadata={"label": "Notes"})
    duration_minutes = fields.Integer(load_default=30, validate=validate.Range(5, 24 * 60),
                                      metadata={"label": "Duration (minutes)"})

    @validates_schema
    def _one_owner_source(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("owner") and data.get("owners"):
            raise ValidationError("give either one owner or a round-robin list, not both", "owners")


def due_date(start: datetime, days: int, business_days: bool) -> datetime:
    """``days`` later; counting only Monday-Friday when ``business_days``."""
    if not business_days:
        return start + timedelta(days=days)
    current, left = start, days
    while left > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            left -= 1
    while current.weekday() >= 5:
        current += timedelta(days=1)
    return current


def pick_owner(params: dict[str, Any], counter: int) -> str | None:
    """Round-robin over the picked owners, walked by the contact's sequence number.

    Not by the outbox row's id: rows of other steps and journeys interleave with this
    step's, so the ids of its rows can all share a remainder (every other id, two owners:
    one salesperson got everything). Contacts are numbered as they arrive, so they spread
    evenly, a repeated row picks the same owner, and a contact who comes back to the
    journey gets the salesperson who had them before.
    """
    if params.get("owners"):
        owners = params["owners"]
        return owners[counter % len(owners)]
    return params.get("owner")


def owner_for(ctx: ActionContext, owner: str | None) -> str | None:
    """The host id to assign: ``contact_owner`` becomes the contact's owner now (none when
    the contact has no owner: the host then assigns it as it assigns unowned records). An
    owner may also be a merge tag (``{{ contact.owner }}``); an empty result leaves the
    activity unassigned."""
    if owner == CONTACT_OWNER:
        found = ctx.contact.fields.get("owner")
        return str(found) if found else None
    return (_render(ctx, owner).strip() or None) if owner else owner


class _Activity(Action[dict[str, Any]]):
    kind: str
    params_schema = ActivityParamsSchema

    def execute(self, ctx: ActionContext, params: dict[str, Any]) -> ActionResult:
        spec = ActivitySpec(kind=self.kind, subject=_render(ctx, params["subject"]),  # type: ignore[arg-type]
                            due_at=due_date(ctx.now, params["due_in_days"], params["business_days"]),
                            owner=owner_for(ctx, pick_owner(params, ctx.contact.id)),
                            description=_render(ctx, params["description"]),
                            duration_minutes=params["duration_minutes"])
        result = ctx.connector.create_activity(ctx.contact_ref, spec, idempotency_key=ctx.idempotency_key)
        return ActionResult.done(f"{self.kind.replace('_', ' ')} {spec.subject!r} for {spec.owner or 'unassigned'}"
                                 f" due {spec.due_at.date().isoformat()}", result.external_id, idempotent=True)


class CreateTask(_Activity):
    name, label, kind = "create_task", "Create task", "task"


class CreatePhoneCall(_Activity):
    name, label, kind = "create_phone_call", "Create phone call", "phone_call"


class CreateAppointment(_Activity):
    name, label, kind = "create_appointment", "Create appointment", "appointment"


def _lead_summary(title: str, created: bool, detail: str) -> str:
    """The timeline's line: when nothing was created, the host's reason if the connector
    gave one (a lead someone else made, one converted long ago), so no one goes looking
    for a lead that was never written."""
    if created:
        return f"lead {title!r} created"
    return f"lead {title!r} not created: {detail}" if detail else f"lead {title!r} already there"


def _render(ctx: ActionContext, text: str) -> str:
    from crm_journeys.actions.templating import render

    return render(text, ctx)

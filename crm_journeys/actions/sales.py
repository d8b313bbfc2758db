"""Hand work to the sales team: leads, tasks, phone calls and appointments in the CRM.

Each is a record the host keeps once per idempotency key, so results say ``idempotent``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from crm_journeys.actions.base import Action, ActionContext, ActionResult, ParamsSchema
from crm_journeys.connectors.base import ActivitySpec, LeadSpec


class LeadParamsSchema(ParamsSchema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=200), metadata={"label": "Lead title"})
    owner = fields.String(load_default=None, metadata={"label": "Owner", "picker": "owners"})
    value = fields.Float(load_default=None, metadata={"label": "Estimated value"})
    description = fields.String(load_default="", metadata={"label": "Notes"})


class CreateLead(Action[dict[str, Any]]):
    name, label, params_schema = "create_lead", "Create lead", LeadParamsSchema

    def execute(self, ctx: ActionContext, params: dict[str, Any]) -> ActionResult:
        spec = LeadSpec(title=_render(ctx, params["title"]), owner=params["owner"], value=params["value"],
                        description=_render(ctx, params["description"]))
        result = ctx.connector.create_lead(ctx.contact_ref, spec, idempotency_key=ctx.idempotency_key)
        return ActionResult.done(f"lead {spec.title!r} {'created' if result.created else 'already there'}",
                                 result.external_id, idempotent=True)


class ActivityParamsSchema(ParamsSchema):
    subject = fields.String(required=True, validate=validate.Length(min=1, max=200), metadata={"label": "Subject"})
    owner = fields.String(load_default=None, metadata={"label": "Assign to", "picker": "owners"})
    owners = fields.List(fields.String(), load_default=list,
                         metadata={"label": "Or round-robin over", "picker": "owners"})
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
    """Round-robin: the outbox row's sequence number walks the list evenly."""
    if params.get("owners"):
        owners = params["owners"]
        return owners[counter % len(owners)]
    return params.get("owner")


def _owner(ctx: ActionContext, owner: str | None) -> str | None:
    """An owner may be a merge tag: ``{{ contact.owner }}`` is "the contact's owner" (the
    canvas offers it by that name); an empty result leaves the activity unassigned."""
    return (_render(ctx, owner).strip() or None) if owner else owner


class _Activity(Action[dict[str, Any]]):
    kind: str
    params_schema = ActivityParamsSchema

    def execute(self, ctx: ActionContext, params: dict[str, Any]) -> ActionResult:
        spec = ActivitySpec(kind=self.kind, subject=_render(ctx, params["subject"]),  # type: ignore[arg-type]
                            due_at=due_date(ctx.now, params["due_in_days"], params["business_days"]),
                            owner=_owner(ctx, pick_owner(params, ctx.outbox_id)),
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


def _render(ctx: ActionContext, text: str) -> str:
    from crm_journeys.actions.templating import render

    return render(text, ctx)

"""Add or remove a tag on the journey's contact in the connected CRM.

Not reported idempotent: a tag change re-run after a crash could undo a later row's
change to the same tag, so the outbox closes these rows one by one.
"""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from crm_journeys.actions.base import Action, ActionContext, ActionResult, ParamsSchema


class TagParamsSchema(ParamsSchema):
    tag = fields.String(required=True, validate=validate.Length(min=1, max=120),
                        metadata={"label": "Tag", "picker": "tags"})


def _emit_tag_event(ctx: ActionContext, kind: str, tag: str) -> None:
    from crm_journeys.runtime.ingest import IncomingEvent

    ctx.emit(IncomingEvent(type=kind, key=tag, contact={"id": ctx.contact.external_id},
                           dedup_key=f"{kind}:{ctx.idempotency_key}"))


class AddTag(Action[dict[str, Any]]):
    """Tags added by a journey count as 'tag added' for other journeys, as in Mailchimp."""

    name, label, params_schema = "add_tag", "Add tag", TagParamsSchema

    def execute(self, ctx: ActionContext, params: dict[str, Any]) -> ActionResult:
        result = ctx.connector.add_tag(ctx.contact_ref, params["tag"], idempotency_key=ctx.idempotency_key)
        _emit_tag_event(ctx, "tag_added", params["tag"])
        return ActionResult.done(f"tagged {params['tag']!r}", result.external_id)


class RemoveTag(Action[dict[str, Any]]):
    name, label, params_schema = "remove_tag", "Remove tag", TagParamsSchema

    def execute(self, ctx: ActionContext, params: dict[str, Any]) -> ActionResult:
        result = ctx.connector.remove_tag(ctx.contact_ref, params["tag"], idempotency_key=ctx.idempotency_key)
        _emit_tag_event(ctx, "tag_removed", params["tag"])
        return ActionResult.done(f"untagged {params['tag']!r}", result.external_id)

"""Sandbox contacts over the API, for testing journeys from the UI without an API token.

The built-in sandbox CRM is where a business user tries a journey for real: the canvas
creates a contact, edits its fields and tags, or sends it any catalogue event. Each save
writes the sandbox CRM's row and feeds its new snapshot through the same inbox a CRM
webhook uses, so the mirror's change signals (tag added, field changed, ...) start and
move journeys exactly as a real host's changes would.
"""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_journeys.auth.accounts import Principal
from crm_journeys.connectors.sandbox import to_canonical
from crm_journeys.definition.triggers import CANONICAL_EVENTS
from crm_journeys.errors import NotFound
from crm_journeys.runtime.ingest import IncomingEvent, ingest
from crm_journeys.runtime.sync import snapshot_event
from crm_journeys.storage.models import SandboxContact
from crm_journeys.web.api.blueprint import api
from crm_journeys.web.api.schemas import In, Out
from crm_journeys.web.endpoint import endpoint
from crm_journeys.web.errors import ApiError
from crm_journeys.web.state import state

TAG = "sandbox"


class SandboxContactIn(In):
    email = fields.Email(required=True)
    first_name = fields.String(load_default="", validate=validate.Length(max=120))
    last_name = fields.String(load_default="", validate=validate.Length(max=120))
    fields_ = fields.Dict(data_key="fields", keys=fields.String(validate=validate.Length(min=1, max=80)),
                          load_default=dict)
    tags = fields.List(fields.String(validate=validate.Length(min=1, max=120)), load_default=list)


class SandboxEventIn(In):
    type = fields.String(required=True, metadata={"description": "a canonical event type (GET /api/catalog)"})
    key = fields.String(load_default="")
    properties = fields.Dict(keys=fields.String(), load_default=dict)


class SandboxContactOut(Out):
    id = fields.Integer()
    email = fields.String()
    first_name = fields.String()
    last_name = fields.String()
    fields_ = fields.Dict(data_key="fields")
    tags = fields.List(fields.String())
    version = fields.Integer()


def _out(row: SandboxContact) -> dict[str, Any]:
    return {"id": row.id, "email": row.email, "first_name": row.first_name, "last_name": row.last_name,
            "fields_": row.fields or {}, "tags": row.tags or [], "version": row.version}


def _row(s: Session, tenant_id: int, contact_id: int) -> SandboxContact:
    row = s.scalar(select(SandboxContact).where(SandboxContact.tenant_id == tenant_id,
                                                SandboxContact.id == contact_id))
    if row is None:
        raise NotFound(f"no sandbox contact {contact_id}")
    return row


def _publish_snapshot(s: Session, tenant_id: int, row: SandboxContact) -> None:
    """The row's new state into the inbox, as the sandbox CRM's webhook would send it."""
    s.flush()
    ingest(s, tenant_id, snapshot_event(to_canonical(row)), state().runtime.clock.now())


@endpoint(api, "/sandbox/contacts", "GET", summary="The sandbox CRM's contacts (newest first)", tag=TAG,
          out=SandboxContactOut, many=True)
def list_sandbox_contacts(principal: Principal) -> Any:
    with state().db.unit_of_work() as s:
        rows = s.scalars(select(SandboxContact).where(SandboxContact.tenant_id == principal.tenant_id)
                         .order_by(SandboxContact.id.desc()).limit(200))
        return [_out(r) for r in rows]


@endpoint(api, "/sandbox/contacts", "POST", summary="Create a sandbox contact (its tags and fields start journeys)",
          tag=TAG, permission="test", body=SandboxContactIn, out=SandboxContactOut, status=201)
def create_sandbox_contact(principal: Principal, body: dict[str, Any]) -> Any:
    now = state().runtime.clock.now()
    with state().db.unit_of_work() as s:
        email = body["email"].lower()
        if s.scalar(select(SandboxContact.id).where(SandboxContact.tenant_id == principal.tenant_id,
                                                    SandboxContact.email == email)) is not None:
            raise ApiError(409, "duplicate", "A sandbox contact with this email exists; edit it instead.",
                           {"email": ["already used by another sandbox contact"]})
        row = SandboxContact(tenant_id=principal.tenant_id, email=email, first_name=body["first_name"],
                             last_name=body["last_name"], fields=dict(body["fields_"]),
                             tags=_unique(body["tags"]), groups=[], created_at=now, modified_at=now, version=1)
        s.add(row)
        _publish_snapshot(s, principal.tenant_id, row)
        return _out(row)


@endpoint(api, "/sandbox/contacts/<int:contact_id>", "PUT",
          summary="Edit a sandbox contact: every changed field and tag reaches the journeys", tag=TAG,
          permission="test", body=SandboxContactIn, out=SandboxContactOut)
def update_sandbox_contact(principal: Principal, contact_id: int, body: dict[str, Any]) -> Any:
    with state().db.unit_of_work() as s:
        row = _row(s, principal.tenant_id, contact_id)
        row.email, row.first_name, row.last_name = body["email"].lower(), body["first_name"], body["last_name"]
        row.fields, row.tags = dict(body["fields_"]), _unique(body["tags"])
        row.version += 1
        row.modified_at = state().runtime.clock.now()
        _publish_snapshot(s, principal.tenant_id, row)
        return _out(row)


@endpoint(api, "/sandbox/contacts/<int:contact_id>/events", "POST",
          summary="Send a sandbox contact any catalogue event (an email open, a purchase, ...)", tag=TAG,
          permission="test", body=SandboxEventIn, raw_out={"type": "object"}, status=202)
def send_sandbox_event(principal: Principal, contact_id: int, body: dict[str, Any]) -> Any:
    spec = CANONICAL_EVENTS.get(body["type"])
    if spec is None:
        raise ApiError(422, "invalid_request", "Unknown event type.",
                       {"type": [f"unknown event type {body['type']!r}; see GET /api/catalog (events)"]})
    properties = dict(body["properties"])
    key = body["key"] or (str(properties.get(spec.key) or "") if spec.key else "")
    if spec.key and key and spec.key not in properties:
        properties[spec.key] = key
    with state().db.unit_of_work() as s:
        row = _row(s, principal.tenant_id, contact_id)
        ingest(s, principal.tenant_id, IncomingEvent(body["type"], {"id": str(row.id), "email": row.email}, key=key,
                                                     properties=properties), state().runtime.clock.now())
    return {"accepted": True, "type": body["type"], "key": key}


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(i.strip() for i in items if i.strip()))

"""Custom-trigger declarations behind the setup page and the REST API: checked in plain
words (each error keyed by the field it concerns: ``name``, ``attributes[2].type``), stored
through ``integrations.custom.declare`` as before, and shown with ready-to-run examples.

Attributes travel as an ordered list of ``{"name", "type", "required"}`` here and are
stored as the name -> ``{"type", "required"}`` mapping the runtime validates events with.
Journeys name a trigger, so its name is fixed once created.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_journeys.errors import DefinitionError, NotFound
from crm_journeys.integrations.custom import NAME, RESERVED, TYPES, declare
from crm_journeys.services.queries import total
from crm_journeys.services.usage import InUse, NameTaken, uses
from crm_journeys.storage.journey_models import CustomTrigger

# What the forms offer (an attribute declared as "list" elsewhere keeps its type).
FORM_TYPES = {"text": "Text", "number": "Number", "boolean": "Yes / no (true or false)", "date": "Date"}
_SAMPLES: dict[str, Any] = {"text": "some text", "number": 1, "boolean": True, "date": "2026-01-31",
                            "list": ["one", "two"]}
_NAME_RULE = "Use lowercase letters, digits and _, starting with a letter (at most 60 characters)."


def declarations(s: Session, tenant_id: int, *, limit: int, offset: int = 0) -> list[CustomTrigger]:
    return list(s.scalars(select(CustomTrigger).where(CustomTrigger.tenant_id == tenant_id)
                          .order_by(CustomTrigger.name).limit(limit).offset(offset)))


def count_declarations(s: Session, tenant_id: int) -> int:
    return total(s, select(CustomTrigger.id).where(CustomTrigger.tenant_id == tenant_id))


def declaration(s: Session, tenant_id: int, trigger_id: int) -> CustomTrigger:
    row = s.scalar(select(CustomTrigger).where(CustomTrigger.tenant_id == tenant_id, CustomTrigger.id == trigger_id))
    if row is None:
        raise NotFound(f"no custom trigger {trigger_id}")
    return row


def trigger_names(s: Session, tenant_id: int) -> list[str]:
    return list(s.scalars(select(CustomTrigger.name).where(CustomTrigger.tenant_id == tenant_id)
                          .order_by(CustomTrigger.name)))


def attribute_list(stored: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The stored mapping as the ordered list the forms and the API show."""
    return [{"name": name, "type": (spec or {}).get("type", "text"), "required": bool((spec or {}).get("required"))}
            for name, spec in (stored or {}).items()]


def check(name: str, attributes: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Errors in plain words, keyed ``name`` and ``attributes[i].name|type``."""
    errors: dict[str, list[str]] = {}
    if not NAME.match(name or ""):
        errors["name"] = ["Give the trigger a name. " + _NAME_RULE if not name else _NAME_RULE]
    seen: set[str] = set()
    for i, attr in enumerate(attributes):
        attr_name, path = str(attr.get("name") or ""), f"attributes[{i}]"
        if attr_name in RESERVED:
            errors[f"{path}.name"] = [f"“{attr_name}” is reserved: choose another name."]
        elif not NAME.match(attr_name):
            errors[f"{path}.name"] = [_NAME_RULE]
        elif attr_name in seen:
            errors[f"{path}.name"] = ["Another attribute already has this name."]
        seen.add(attr_name)
        if attr.get("type") not in TYPES:
            errors[f"{path}.type"] = ["Choose a type: " + ", ".join(FORM_TYPES.values()).lower() + "."]
    return errors


def create(s: Session, tenant_id: int, name: str, attributes: list[dict[str, Any]], now: datetime) -> CustomTrigger:
    """Declare a new trigger.

    Raises:
        DefinitionError: errors keyed as ``check`` gives them.
        NameTaken: the tenant already declared a trigger with this name.
    """
    name = (name or "").strip()
    errors = check(name, attributes)
    if errors:
        raise DefinitionError(errors)
    if s.scalar(select(CustomTrigger.id).where(CustomTrigger.tenant_id == tenant_id,
                                               CustomTrigger.name == name)) is not None:
        raise NameTaken(f"There is already a custom trigger named “{name}”.")
    return declare(s, tenant_id, name, _stored(attributes), now)


def update(s: Session, tenant_id: int, trigger_id: int, attributes: list[dict[str, Any]],
           now: datetime) -> CustomTrigger:
    """Replace a trigger's attributes; events arriving from now on are checked against them."""
    row = declaration(s, tenant_id, trigger_id)
    errors = check(row.name, attributes)
    if errors:
        raise DefinitionError(errors)
    return declare(s, tenant_id, row.name, _stored(attributes), now)


def delete(s: Session, tenant_id: int, trigger_id: int) -> str:
    """Delete a declaration no published journey starts from; returns its name."""
    row = declaration(s, tenant_id, trigger_id)
    blocking = [u for u in uses(s, tenant_id, "custom_trigger", row.name) if u.published]
    if blocking:
        raise InUse(f"The custom trigger “{row.name}”", blocking)
    s.delete(row)
    return row.name


def _stored(attributes: list[dict[str, Any]]) -> dict[str, Any]:
    return {a["name"]: {"type": a["type"], "required": bool(a.get("required"))} for a in attributes}


# --- examples ---------------------------------------------------------------------------

def sample_attributes(row: CustomTrigger) -> dict[str, Any]:
    return {name: _SAMPLES.get((spec or {}).get("type", "text"), "some text")
            for name, spec in (row.attributes or {}).items()}


def event_body(row: CustomTrigger) -> dict[str, Any]:
    """An events API body for this trigger (``POST /api/events``)."""
    return {"type": "custom_trigger", "key": row.name, "contact": {"email": "ada@example.com"},
            "properties": sample_attributes(row), "id": f"{row.name}-0001"}


def curl_examples(row: CustomTrigger, events_url: str, hook_url: str) -> dict[str, str]:
    """Two ways to fire the trigger, secrets left as placeholders: never rendered here."""
    hook_body = {"trigger": row.name, "contact": {"email": "ada@example.com"},
                 "attributes": sample_attributes(row), "id": f"{row.name}-0001"}
    return {
        "events_api": (f"curl -X POST {events_url} \\\n"
                       '  -H "Authorization: Bearer $CRM_JOURNEYS_TOKEN" \\\n'
                       '  -H "Content-Type: application/json" \\\n'
                       f"  -d '{json.dumps(event_body(row))}'"),
        "webhook": (f"curl -X POST {hook_url} \\\n"
                    '  -H "X-Webhook-Secret: $WEBHOOK_SECRET" \\\n'
                    '  -H "Content-Type: application/json" \\\n'
                    f"  -d '{json.dumps(hook_body)}'"),
    }

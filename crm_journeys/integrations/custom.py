"""Custom triggers: business events the admin declares (name + attribute schema).

A declaration lists each attribute with a type (text, number, boolean, date, list) and
whether it is required; an event is checked against it on arrival and refused with a
message naming the attribute. Inbound: ``POST /hooks/<tenant>/custom`` with
``{"trigger": name, "contact": {"email"|"id"}, "attributes": {...}}`` and the tenant's
webhook secret in ``X-Webhook-Secret``. The event's attributes land at the top level of
``custom_trigger`` events, where filters read them as ``event.<attribute>``.
"""

from __future__ import annotations

import hmac
import re
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_journeys.errors import DefinitionError
from crm_journeys.integrations import Delivery, HookRejected, require_dict, require_types
from crm_journeys.runtime.ingest import IncomingEvent
from crm_journeys.storage.journey_models import CustomTrigger

TYPES = ("text", "number", "boolean", "date", "list")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
RESERVED = ("trigger", "journey")


def declare(session: Session, tenant_id: int, name: str, attributes: dict[str, Any], now: datetime) -> CustomTrigger:
    """Create or replace a custom trigger declaration (validated)."""
    errors: dict[str, list[str]] = {}
    if not NAME.match(name or ""):
        errors["name"] = ["use lowercase letters, digits and '_' (starting with a letter)"]
    for attr, spec in (attributes or {}).items():
        if not NAME.match(attr) or attr in RESERVED:
            errors[f"attributes.{attr}"] = ["not a usable attribute name"]
        elif not isinstance(spec, dict) or spec.get("type") not in TYPES:
            errors[f"attributes.{attr}.type"] = [f"must be one of: {', '.join(TYPES)}"]
    if errors:
        raise DefinitionError(errors)
    row = session.scalar(select(CustomTrigger).where(CustomTrigger.tenant_id == tenant_id, CustomTrigger.name == name))
    if row is None:
        row = CustomTrigger(tenant_id=tenant_id, name=name, attributes=attributes, created_at=now)
        session.add(row)
    else:
        row.attributes = attributes
    session.flush()
    return row


def attribute_errors(declared: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Messages naming each attribute that is missing, unknown or of the wrong type."""
    out = []
    for attr, spec in declared.items():
        value = given.get(attr)
        if value is None:
            if spec.get("required", False):
                out.append(f"attribute '{attr}' is required")
            continue
        if not _fits(spec["type"], value):
            out.append(f"attribute '{attr}' must be {_article(spec['type'])} (got {value!r})")
    out += [f"attribute '{a}' is not declared for this trigger" for a in sorted(set(given) - set(declared))]
    return out


def _article(kind: str) -> str:
    return {"text": "a text", "number": "a number", "boolean": "true or false", "date": "an ISO date",
            "list": "a list"}[kind]


def _fits(kind: str, value: Any) -> bool:
    if kind == "text":
        return isinstance(value, str)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list)
    try:
        date.fromisoformat(str(value)[:10])
    except ValueError:
        return False
    return isinstance(value, str)


def validated_event(session: Session, tenant_id: int, name: str, contact: dict[str, Any],
                    attributes: dict[str, Any], dedup_key: str | None = None) -> IncomingEvent:
    """The ``custom_trigger`` event for a declared trigger; DefinitionError when it does not fit."""
    row = session.scalar(select(CustomTrigger).where(CustomTrigger.tenant_id == tenant_id, CustomTrigger.name == name))
    if row is None:
        raise DefinitionError({"trigger": [f"no custom trigger named {name!r}"]})
    problems = attribute_errors(row.attributes or {}, attributes or {})
    if problems:
        raise DefinitionError({"attributes": problems})
    if not (contact.get("email") or contact.get("id")):
        raise DefinitionError({"contact": ["give the contact's email or id"]})
    return IncomingEvent(type="custom_trigger", key=name, contact=contact,
                         properties={"trigger": name, **attributes}, dedup_key=dedup_key)


def parse(delivery: Delivery) -> list[IncomingEvent]:
    """Needs ``delivery.config``: ``secret`` and a ``session``/``tenant_id`` to look declarations up."""
    expected = str(delivery.config.get("secret") or "")
    given = delivery.headers.get("X-Webhook-Secret") or ""
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise HookRejected(401, "custom: missing or wrong X-Webhook-Secret")
    body = require_dict(delivery.body, "custom")
    require_types(body, "custom", {"trigger": str, "contact": dict, "attributes": dict})
    if not isinstance(body.get("id"), str | int | None) or isinstance(body.get("id"), bool):
        raise HookRejected(400, "custom: id must be a string or a number")
    try:
        return [validated_event(delivery.config["session"], delivery.config["tenant_id"], str(body.get("trigger") or ""),
                                body.get("contact") or {}, body.get("attributes") or {},
                                f"custom:{body.get('trigger')}:{body['id']}" if body.get("id") else None)]
    except DefinitionError as exc:
        raise HookRejected(422, "; ".join(m for msgs in exc.errors.values() for m in msgs)) from None

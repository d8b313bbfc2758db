"""Checks that need the tenant, run when a journey is published (not when a draft is saved).

The journey language validates a document on its own; these checks add what only the
tenant knows, so a journey that could never work fails at publish, naming the step,
instead of dead-lettering (or retrying for hours) with the first contact:

- ``call_webhook`` URLs pass the outbound guard (``crm_journeys.outbound``) with the
  tenant's ``allow_private_webhooks``; the guard runs again at every send, since DNS can
  change in between;
- ``send_email`` needs SMTP (the tenant's or the server's) or a host that sends email.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy.orm import Session

from crm_journeys import outbound
from crm_journeys.definition.model import ActionStep
from crm_journeys.definition.model import Journey as JourneyModel
from crm_journeys.errors import ConnectorError, CrmJourneysError, DefinitionError
from crm_journeys.storage.models import Tenant


def check_for_tenant(session: Session, tenant_id: int, model: JourneyModel) -> None:
    """Raises ``DefinitionError`` naming each step the tenant cannot run."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        return
    settings: dict[str, Any] = dict(tenant.settings or {})
    errors: dict[str, list[str]] = {}
    for index, step in enumerate(model.steps):
        if not isinstance(step, ActionStep):
            continue
        problem = None
        if step.action == "call_webhook":
            problem = _webhook_problem(str(step.params.get("url") or ""), settings)
        elif step.action == "send_email":
            problem = _email_problem(tenant.connector, settings)
        if problem:
            key = "params.url" if step.action == "call_webhook" else "action"
            errors[f"steps[{index}].{key}"] = [problem]
    if errors:
        raise DefinitionError(errors)


def _webhook_problem(url: str, settings: dict[str, Any]) -> str | None:
    try:
        outbound.check_url(url, allow_private=bool(settings.get("allow_private_webhooks")))
    except outbound.UnsafeTarget as exc:
        return f"this URL is refused: {exc}"
    except ConnectorError:
        return None  # the name does not resolve right now; the send re-checks it
    return None


def _email_problem(connector_name: str, settings: dict[str, Any]) -> str | None:
    if settings.get("smtp_url") or os.environ.get("CRM_JOURNEYS_SMTP_URL"):
        return None
    from crm_journeys.connectors.base import Connector
    from crm_journeys.connectors.registry import load_connector

    try:
        cls = load_connector(connector_name)
    except CrmJourneysError:
        return None
    if cls.send_email is Connector.send_email:
        return (f"send_email needs SMTP: {cls.label} cannot send email itself; "
                "set the tenant's smtp_url (or CRM_JOURNEYS_SMTP_URL)")
    return None

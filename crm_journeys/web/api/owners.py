"""The owners a journey can assign work to, for the builder's owner picker.

``GET /api/owners`` lists the tenant CRM's active users as that CRM knows them (id, name,
email), led by the ``contact_owner`` choice: "whoever owns the contact when the action
runs". A journey may store either the id or the email; publishing turns emails into ids.
"""

from __future__ import annotations

from typing import Any

from crm_journeys.auth.accounts import Principal
from crm_journeys.connectors.base import CONTACT_OWNER
from crm_journeys.errors import ConnectorError
from crm_journeys.web.api.blueprint import api
from crm_journeys.web.endpoint import endpoint
from crm_journeys.web.errors import ApiError
from crm_journeys.web.state import state

OWNER_ITEM = {"type": "object", "required": ["id", "name", "kind"], "properties": {
    "id": {"type": "string", "description": "What to put in a step's owner parameter"},
    "name": {"type": "string"}, "email": {"type": "string", "nullable": True},
    "kind": {"type": "string", "enum": ["contact_owner", "user"]},
    "complete": {"type": "boolean", "description": "False: the CRM cannot list every user"}}}


@endpoint(api, "/owners", "GET", summary="Who a journey can assign leads and activities to",
          tag="setup", raw_out={"type": "array", "items": OWNER_ITEM}, extra_statuses=(502,),
          description="The CRM's active users (id, name, email) after the `contact_owner` "
                      "choice. A step's `owner` / `owners` take an id or an email from here; "
                      "emails are resolved to ids when the journey is published, and an owner "
                      "the CRM does not know is refused then. `complete` in each item is "
                      "false when the CRM cannot list every user (the sandbox): any owner is "
                      "then accepted as written.")
def list_owners(principal: Principal) -> Any:
    connector = state().runtime.connector_for(principal.tenant_id)
    try:
        owners = connector.list_owners()
    except ConnectorError as exc:
        raise ApiError(502, "crm_unavailable",
                       f"{connector.label} could not list its users: {exc}") from None
    complete = "owners" in connector.capabilities
    first = {"id": CONTACT_OWNER, "name": "The contact's owner", "email": None,
             "kind": "contact_owner", "complete": complete}
    return [first] + [{"id": o.id, "name": o.name, "email": o.email, "kind": "user",
                       "complete": complete} for o in sorted(owners, key=lambda o: o.name.lower())]

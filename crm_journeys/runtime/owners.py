"""Owners as users know them: emails in a journey become the host's ids at publish.

An author writes ``"owner": "sam@sales.example"`` (or picks Sam in the builder); the CRM
wants its own id for Sam. Resolving when the journey is published, against the host's list
of active users, refuses a typo or a salesperson who left right then, next to the step that
names them, instead of dead-lettering every action later. ``contact_owner`` stays as it
is: it names whoever owns the contact when the action runs (``actions/sales.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crm_journeys.connectors.base import CONTACT_OWNER, Owner
from crm_journeys.errors import ConnectorError, DefinitionError

if TYPE_CHECKING:
    from crm_journeys.runtime.services import Runtime

# The host's active users, or None when the host takes owners as written (the sandbox).
OwnerLookup = Callable[[], list[Owner] | None]


def owner_lookup(runtime: Runtime, tenant_id: int) -> OwnerLookup:
    """Asks the tenant's connector for its users, only once a journey names an owner (so a
    journey without owners publishes with the CRM down). Connectors without the
    ``owners`` capability do not know the complete list: owners stay as written.

    Call it before opening the publishing transaction: the connector is built here (that
    reads the tenant's row, which SQLite would not allow inside another write).
    """
    try:
        connector = runtime.connector_for(tenant_id)
    except Exception as exc:  # noqa: BLE001 - broken CRM settings must not block journeys without owners
        reason = f"{type(exc).__name__}: {exc}"

        def unavailable() -> list[Owner] | None:
            raise ConnectorError(f"the CRM connector could not be set up ({reason})")

        return unavailable

    def lookup() -> list[Owner] | None:
        return connector.list_owners() if "owners" in connector.capabilities else None

    return lookup


def owner_messages(error: DefinitionError) -> list[str]:
    """The messages of ``error`` about owners: the only ones a draft check cannot find,
    since they depend on the CRM's users."""
    return [m for path, messages in error.errors.items() if ".owner" in path for m in messages]


def owner_param_names(actions: Any) -> dict[str, list[str]]:
    """Action name -> its parameters that name owners (``picker: owners`` in the schema)."""
    out: dict[str, list[str]] = {}
    for name, action in (actions or {}).items():
        schema = getattr(action, "params_schema", None)
        fields = getattr(schema, "_declared_fields", {}) if schema else {}
        names = [f for f, spec in fields.items() if spec.metadata.get("picker") == "owners"]
        if names:
            out[name] = names
    return out


def resolve_owners(document: dict[str, Any], actions: Any,
                   lookup: OwnerLookup | None) -> dict[str, Any]:
    """A copy of ``document`` whose owner parameters hold the host's ids.

    Raises:
        DefinitionError: an owner is no active user of the host (the path names the step
            and parameter), or the host could not be asked.
    """
    places = list(_owner_places(document, owner_param_names(actions)))
    if lookup is None or not places:
        return document
    try:
        owners = lookup()
    except ConnectorError as exc:
        path = places[0][0]
        raise DefinitionError({path: [f"the CRM could not list its users to check this owner: "
                                      f"{exc}"]}) from None
    if owners is None:
        return document
    by_id = {o.id: o.id for o in owners}
    # Salesforce shows 15-character ids in its UI and answers 18-character ones in the API.
    by_id.update({o.id[:15]: o.id for o in owners if len(o.id) == 18})
    by_email = {o.email.lower(): o.id for o in owners if o.email}
    resolved = copy.deepcopy(document)
    errors: dict[str, list[str]] = {}
    for path, step_index, name, position, value in places:
        found = (value if value == CONTACT_OWNER else
                 by_id.get(value) or by_email.get(value.strip().lower()))
        if found is None:
            step_id = document["steps"][step_index].get("id")
            errors[path] = [f"step {step_id!r}: {value!r} is not an active user of the CRM "
                            "who can own records; pick one from GET /api/owners, or "
                            f"{CONTACT_OWNER!r}"]
            continue
        params = resolved["steps"][step_index]["params"]
        if position is None:
            params[name] = found
        else:
            params[name][position] = found
    if errors:
        raise DefinitionError(errors)
    return resolved


def _owner_places(document: dict[str, Any], names: dict[str, list[str]]) -> Any:
    """(path, step index, parameter, list position or None, value) of every owner given."""
    steps = document.get("steps") if isinstance(document, dict) else None
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        if not isinstance(step, dict) or not isinstance(step.get("params"), dict):
            continue
        for name in names.get(str(step.get("action")), []):
            value = step["params"].get(name)
            if isinstance(value, str) and value:
                yield f"steps[{i}].params.{name}", i, name, None, value
            elif isinstance(value, list):
                for j, item in enumerate(value):
                    if isinstance(item, str) and item:
                        yield f"steps[{i}].params.{name}[{j}]", i, name, j, item

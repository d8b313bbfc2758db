"""Generates ``plugin_manifest.json``, the add-on's description for every host, from the
registries: connectors and actions from their entry points, install needs from
``crm_journeys.hosts``. A test keeps the checked-in file equal to what this produces
(``crm-journeys manifest`` rewrites it) and valid against ``manifest.schema.json``.

Also home of the small JSON Schema checker that validates a tenant's settings against the
manifest's settings schema at install time (the subset the manifest uses: types,
required, properties, additionalProperties, enum, pattern, bounds, items), so the runtime
does not depend on ``jsonschema``.
"""

from __future__ import annotations

import json
import re
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from crm_journeys import __version__
from crm_journeys.hosts import ACTION_NEEDS, CAPABILITIES, WEBHOOK_PATH, HostProfile, profile_for

ROOT = Path(__file__).resolve().parent.parent
MANIFEST_PATH = ROOT / "plugin_manifest.json"
SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")
SCHEMA_ID = "https://crm-journeys.example/schemas/plugin-manifest-1.schema.json"
ENDPOINTS = {
    "install": "/install/{host}",
    "oauth_callback": "/install/{host}/callback",
    "uninstall": "/install/tenants/{tenant_slug}/uninstall",
    "webhook": WEBHOOK_PATH,
    "sms_inbound": "/hooks/{tenant_slug}/twilio",
    "sms_status": "/hooks/{tenant_slug}/twilio/status",
    "contact_card": "/crm/contact",
    "health": "/healthz",
    "api": "/api",
}


def _entry_points(group: str) -> dict[str, str]:
    return {ep.name: ep.value for ep in sorted(entry_points(group=group), key=lambda e: e.name)}


def build_manifest() -> dict[str, Any]:
    """The manifest as a dict, in a stable order."""
    from crm_journeys.actions.registry import installed_actions
    from crm_journeys.connectors.registry import GROUP as CONNECTORS
    from crm_journeys.connectors.registry import installed_connectors

    connectors = installed_connectors()
    actions = installed_actions()
    return {
        "$schema": SCHEMA_ID,
        "manifest_version": 1,
        "id": "crm-journeys",
        "name": "Customer journeys",
        "description": "Customer journeys for the CRM you already use: a durable_rules "
                       "journey engine that installs as an add-on.",
        "version": __version__,
        "license": "Apache-2.0",
        "entry_points": {
            "connectors": _entry_points(CONNECTORS),
            "actions": _entry_points("crm_journeys.actions"),
            "cli": "crm_journeys.cli:main",
            "wsgi": "crm_journeys.app:create_app",
            "flask_extension": "crm_journeys.extension:CrmJourneys",
        },
        "endpoints": ENDPOINTS,
        "capabilities": CAPABILITIES,
        "actions": {name: {"label": cls.label, "needs": ACTION_NEEDS.get(name)}
                    for name, cls in actions.items()},
        "hosts": {name: _host(profile_for(name), cls.capabilities)
                  for name, cls in connectors.items()},
    }


def _host(profile: HostProfile, supports: frozenset[str]) -> dict[str, Any]:
    scopes = {cap: list(s) for cap, s in profile.scopes.items()
              if not (cap == "receive_webhooks" and "webhooks" not in supports)
              and not (cap == "log_email" and "log_email" not in supports)}
    host: dict[str, Any] = {
        "label": profile.label,
        "auth": _auth(profile),
        "connector_capabilities": sorted(supports),
        "capabilities": scopes,
        "permissions": list(profile.permissions),
        "webhooks": [dict(w) for w in profile.webhooks],
        "sync": {"mode": "webhooks+polling" if "webhooks" in supports else "polling",
                 "default_interval_seconds": profile.default_sync_interval},
        "settings_schema": profile.settings_schema(),
        "credentials_schema": profile.credentials_schema(),
        "ui_extensions": [dict(u) for u in profile.ui],
        "min_host_version": profile.min_host_version,
    }
    if profile.notes:
        host["notes"] = profile.notes
    return host


def _auth(profile: HostProfile) -> dict[str, Any]:
    if profile.auth != "oauth2":
        return {"type": profile.auth, "fields": list(profile.credentials)}
    app = profile.oauth_app({"environment_url": "{environment_url}"})
    assert app is not None  # every oauth2 profile names its app
    return {"type": "oauth2", "grant": "authorization_code", "pkce": app.pkce,
            "authorize_url": app.authorize_url, "token_url": app.token_url,
            "scopes": list(app.scopes), "optional_scopes": list(app.optional_scopes),
            "redirect_path": ENDPOINTS["oauth_callback"]}


def render() -> str:
    return json.dumps(build_manifest(), indent=2, ensure_ascii=False) + "\n"


def write(path: Path = MANIFEST_PATH) -> Path:
    path.write_text(render())
    return path


def manifest() -> dict[str, Any]:
    """The manifest as shipped when present (an installed package), else generated."""
    if MANIFEST_PATH.exists():
        return json.loads(MANIFEST_PATH.read_text())
    return build_manifest()


# --- settings validation ---------------------------------------------------------------
_TYPES: dict[str, Any] = {"object": dict, "array": list, "string": str, "boolean": bool,
                          "integer": int, "number": (int, float)}


def schema_errors(value: Any, schema: dict[str, Any], path: str = "") -> dict[str, str]:
    """Every place ``value`` breaks ``schema``, as ``{json path: message}``."""
    where = path or "$"
    kind = schema.get("type")
    if kind and not _is(value, kind):
        return {where: f"must be {'an' if kind[0] in 'aeiou' else 'a'} {kind}"}
    errors: dict[str, str] = {}
    if "enum" in schema and value not in schema["enum"]:
        errors[where] = f"must be one of {', '.join(map(str, schema['enum']))}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors[where] = "must not be empty" if schema["minLength"] == 1 else \
                f"must be at least {schema['minLength']} characters"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors[where] = ("must be an http(s) URL" if schema.get("format") == "uri"
                             else f"must match {schema['pattern']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors[where] = f"must be at least {schema['minimum']}"
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errors[where] = f"must be more than {schema['exclusiveMinimum']}"
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors.update(schema_errors(item, schema["items"], f"{path}[{i}]"))
    if isinstance(value, dict):
        errors.update(_object_errors(value, schema, path))
    return errors


def _object_errors(value: dict[str, Any], schema: dict[str, Any], path: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    props = schema.get("properties", {})
    prefix = f"{path}." if path else ""
    for name in schema.get("required", []):
        if value.get(name) in (None, ""):
            errors[prefix + name] = "is required"
    for name, item in value.items():
        if name in props:
            if item is not None:
                errors.update(schema_errors(item, props[name], prefix + name))
        elif schema.get("additionalProperties") is False:
            known = ", ".join(sorted(props))
            errors[prefix + name] = f"is not a setting of this host (known: {known})"
    return errors


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[kind])


if __name__ == "__main__":  # pragma: no cover
    print(write())

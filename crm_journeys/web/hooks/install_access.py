"""Who may install a tenant with pasted credentials: the check before the server calls anything.

An install with an API key makes the server connect to the host with what the caller
pasted, and a success hands out a new tenant with an admin API token. So an anonymous
caller must not be able to start one (it would make the server fetch URLs of their
choosing and mint tenants at will). It is allowed to:

- a signed-in admin (session with CSRF, or an admin API token), or
- whoever holds the operator's install key (``CRM_JOURNEYS_INSTALL_KEY``, in the app config
  or the environment), sent as ``Authorization: Bearer <key>``, an ``install_key`` form
  field or JSON member.

OAuth installs need neither: the POST only redirects to the host's sign-in, and the tenant
is created only on a callback carrying the state this server put in the browser's session.
But the callback makes the server call the token and API URLs of the settings, so for an
anonymous installer every URL setting must pass the outbound guard (public addresses
only), unless the operator allows private hosts (``CRM_JOURNEYS_INSTALL_PRIVATE_HOSTS``,
for on-premises CRMs and tests).
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from flask import current_app, request

from crm_journeys.auth.accounts import can
from crm_journeys.web.access import api_principal
from crm_journeys.web.errors import ApiError

REFUSED = ("Installing with an API key needs a signed-in admin or the operator's install key "
           "(CRM_JOURNEYS_INSTALL_KEY) as 'Authorization: Bearer <key>' or the install_key field.")


def install_key() -> str:
    return str(current_app.config.get("CRM_JOURNEYS_INSTALL_KEY") or os.environ.get("CRM_JOURNEYS_INSTALL_KEY") or "")


def _offered_key() -> str:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    if request.is_json:
        body: Any = request.get_json(silent=True)
        return str(body.get("install_key") or "") if isinstance(body, dict) else ""
    return request.form.get("install_key", "")


def may_install_with_key() -> bool:
    """True for the install key's holder or a signed-in admin; never raises."""
    expected, offered = install_key(), _offered_key()
    if expected and offered and hmac.compare_digest(expected.encode(), offered.encode()):
        return True
    try:
        principal = api_principal()
    except ApiError:
        return False
    return can(principal.role, "admin")


def private_url_errors(settings: dict[str, Any], props: dict[str, Any]) -> dict[str, str]:
    """``settings.<name>`` -> why, for each URL setting an anonymous install may not use."""
    from crm_journeys import outbound
    from crm_journeys.errors import ConnectorError

    if current_app.config.get("CRM_JOURNEYS_INSTALL_PRIVATE_HOSTS"):
        return {}
    errors = {}
    for name, value in settings.items():
        if (props.get(name) or {}).get("format") != "uri" or not isinstance(value, str):
            continue
        try:
            outbound.check_url(value)
        except outbound.UnsafeTarget as exc:
            errors[f"settings.{name}"] = f"must be a public URL ({exc})"
        except ConnectorError:
            errors[f"settings.{name}"] = "does not resolve"
    return errors

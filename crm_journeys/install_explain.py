"""Why an install (or a later sync) failed, in one sentence that says what to fix.

A CRM admin installing the add-on sees this and nothing else: no traceback, no page of
the host's HTML, no bare "Organization context is required". The connector's own error
keeps the detail (status, the host's words) for the log; here it becomes advice.
"""

from __future__ import annotations

import logging
import re

from crm_journeys.errors import ConnectorError, FatalConnectorError, RetriableConnectorError

log = logging.getLogger(__name__)

CREDENTIAL_HINT = {
    "bottlecrm": "a personal access token (bcrm_pat_...) of an active profile with the "
                 "ADMIN role",
    "odoo": "the user's login and an API key made under Preferences > Account Security",
    "hubspot": "a private app access token with the crm.objects.contacts scopes",
    "salesforce": "a connected app authorised by a user who can read and edit contacts",
    "dynamics": "an application user with a security role on contacts",
}


def explain(host: str, url: str | None, exc: BaseException) -> str:
    """The sentence shown for a failed install (the full error goes to the log)."""
    log.warning("install of %s failed: %s: %s", host, type(exc).__name__, exc)  # no traceback:
    # the CLI prints this log, and an installer is owed a sentence, not a stack
    return describe(host, url, exc, echo=False)


def describe(host: str, url: str | None, exc: BaseException, *, echo: bool = True) -> str:
    """A connector failure as advice; also what a tenant's admin reads when a sync fails.

    ``echo`` False (install) keeps the remote server's words out and says only its status:
    whoever installs may point the URL at a server that is not the CRM at all.
    """
    where = f" at {url}" if url else ""
    text = str(exc)
    status = getattr(exc, "status", None)

    def _tail(text: str) -> str:
        return _words(text) if echo else (f"HTTP {status}" if status else type(exc).__name__)

    hint = CREDENTIAL_HINT.get(host, "credentials of a user who may read and edit contacts")
    if isinstance(exc, RetriableConnectorError):
        if "Error" in text and ("Connection" in text or "Timeout" in text):
            return (f"could not reach {host}{where}: check the URL and that the server is "
                    "running and reachable from this machine")
        return f"{host}{where} is not answering normally right now ({_tail(text)}); try again later"
    if not isinstance(exc, ConnectorError):
        return (f"{host}{where} answered in a way this connector does not understand "
                f"({type(exc).__name__}): check that the URL is the {host} server's own "
                "address, not a page or proxy in front of it")
    if "HTML page" in text or status == 404:
        return (f"no {host} API answers{where}: use the server's base address (for "
                "example https://crm.example.com, without /api or a page path)")
    if status in (401, 403) or (host == "bottlecrm" and "rganization context" in text):
        if isinstance(exc, FatalConnectorError) and status == 403 and "role" in text:
            return _own_sentence(text, status, echo)
        return f"{host} did not accept the credentials ({_tail(text)}); use {hint}"
    return f"{host} refused the connection ({_tail(text)})"


def _own_sentence(text: str, status: int, echo: bool) -> str:
    """The connector's own advice out of ``host: METHOD /path -> 403: advice (host's words)``;
    without ``echo`` the host's words give way to the status."""
    sentence = re.split(r" -> \d{3}: ", text, maxsplit=1)[-1]
    return sentence if echo else f"{sentence.rsplit(' (', 1)[0]} (HTTP {status})"


def _words(text: str) -> str:
    """The host's words without our ``host: METHOD /path ->`` prefix, kept short."""
    words = text.split(" -> ", 1)[-1]
    return words if len(words) <= 200 else words[:197] + "..."

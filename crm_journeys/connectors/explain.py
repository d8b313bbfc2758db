"""Turns a host's refusal into a sentence that says what to fix.

A status code alone does not tell a CRM admin what to do: a 401 means "reconnect", a 403
"grant this permission", a 400 naming an unknown property "create it or change the
step". Each connector describes its host once (``HostHints``) and wraps its error-message
function with ``explaining``; every ``FatalConnectorError`` then carries the sentence,
followed by the host's own words so nothing the host said is lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import requests

MessageOf = Callable[[requests.Response], str]


@dataclass(frozen=True)
class HostHints:
    """What to tell an admin about one host's refusals.

    Attributes:
        label: the host's name as its users know it ("HubSpot").
        unauthorized: what to do when the host refuses the credentials (401).
        forbidden: what to do when the credentials lack a permission (403).
        unknown_field: patterns whose first group is the field the host does not know.
        not_forbidden: texts that make a 403 something else (an API budget, not a role).
    """

    label: str
    unauthorized: str
    forbidden: str
    unknown_field: tuple[str, ...] = ()
    not_forbidden: tuple[str, ...] = ()

    def field_named(self, text: str) -> str | None:
        for pattern in self.unknown_field:
            match = re.search(pattern, text)
            if match:
                return match.group(1)
        return None


def explaining(message_of: MessageOf, hints: HostHints) -> MessageOf:
    """``message_of`` with a leading sentence for credential, permission and field errors."""

    def message(response: requests.Response) -> str:
        return explain(hints, response.status_code, message_of(response))

    return message


def explain(hints: HostHints, status: int, text: str) -> str:
    """The host's words ``text`` for an answer of ``status``, led by what to fix."""
    said = f" ({text})" if text else ""  # Dataverse's 401 has an empty body
    if status == 401:
        return f"{hints.label} refused the credentials: {hints.unauthorized}{said}"
    if status == 403 and not any(t in text for t in hints.not_forbidden):
        return f"{hints.label} refused the request: {hints.forbidden}{said}"
    name = hints.field_named(text) if 400 <= status < 500 else None
    if name:
        return (f"{hints.label} has no field {name!r} on this record: create it in "
                f"{hints.label} or change the journey step that writes it{said}")
    return text

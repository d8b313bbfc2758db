"""Personalisation in Jinja2's sandbox: business users' text is rendered, never executed.

Templates see plain data only (``contact.first_name``, ``contact.fields.city``); the
sandbox refuses attribute access to internals, and a broken template fails the action
with the template's own error message rather than sending a half-rendered email.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from crm_journeys.errors import FatalConnectorError


@cache
def _env() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(autoescape=False, undefined=ChainableUndefined)  # a missing merge field renders empty, as in Mailchimp
    return env


@lru_cache(maxsize=1024)
def _compiled(text: str) -> Template:
    """A journey's few templates are rendered for every contact: compile each once."""
    return _env().from_string(text)


def template_vars(ctx: Any) -> dict[str, Any]:
    contact = ctx.contact
    fields = dict(contact.fields)
    return {"contact": {**fields, "email": contact.email, "fields": fields, "tags": list(contact.tags)}}


def render(text: str, ctx: Any, *, autoescape: bool = False) -> str:
    """Render ``text`` for the action's contact; plain text passes through unchanged."""
    if "{" not in text:
        return text
    try:
        template = _compiled(text)
        if autoescape:
            from markupsafe import escape

            values = _escape_all(template_vars(ctx), escape)
            return template.render(values)
        return template.render(template_vars(ctx))
    except TemplateError as exc:
        raise FatalConnectorError(f"template error: {exc}") from exc


@lru_cache(maxsize=1024)
def check_template(text: str) -> str | None:
    """A syntax error message, or None: used when a journey is validated (and when each
    outbox row's parameters are, so the answer is kept)."""
    try:
        _env().parse(text)
    except TemplateError as exc:
        return str(exc)
    return None


def _escape_all(value: Any, escape: Any) -> Any:
    if isinstance(value, dict):
        return {k: _escape_all(v, escape) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape_all(v, escape) for v in value]
    if isinstance(value, str):
        return escape(value)
    return value

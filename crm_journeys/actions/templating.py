"""Personalisation in Jinja2's sandbox: business users' text is rendered, never executed.

Templates see plain data only (``contact.first_name``, ``contact.fields.city``); the
sandbox refuses attribute access to internals, and a broken template fails the action
with the template's own error message rather than sending a half-rendered email.

The sandbox stops unsafe access, not unbounded work, so every render is also limited
(``limits``): ``range()`` to ``MAX_RANGE`` items, ``*`` and ``**`` to results of bounded
size, the output to ``MAX_OUTPUT`` characters and the run to ``MAX_SECONDS`` of CPU-bound
time (a per-thread trace checks the clock, so a nested loop that prints nothing stops
too). Any exception from a render is the template's own doing and would recur on every
retry, so it fails the action once (``FatalConnectorError``) instead of being retried.
"""

from __future__ import annotations

import operator
import sys
import time
from functools import cache, lru_cache
from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from crm_journeys.errors import FatalConnectorError

MAX_RANGE = 1000
MAX_SEQUENCE = 100_000  # items or characters a `*` may build
MAX_POWER = 1000  # the largest exponent `**` accepts
MAX_OUTPUT = 256 * 1024
MAX_SECONDS = 1.0


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with bounded ``range``, ``*`` and ``**``."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _range

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            if isinstance(right, int | float) and abs(right) > MAX_POWER:
                raise SecurityError(f"exponent {right} is larger than {MAX_POWER}")
            return operator.pow(left, right)
        sizes = [len(x) for x in (left, right) if isinstance(x, str | list | tuple)]
        counts = [x for x in (left, right) if isinstance(x, int) and not isinstance(x, bool)]
        if sizes and counts and sizes[0] * max(counts[0], 0) > MAX_SEQUENCE:
            raise SecurityError(f"a repeated text or list longer than {MAX_SEQUENCE}")
        return operator.mul(left, right)


def _range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise SecurityError(f"range() of more than {MAX_RANGE} items")
    return rng


@cache
def _env() -> LimitedSandbox:
    return LimitedSandbox(autoescape=False, undefined=ChainableUndefined)  # a missing merge field renders empty, as in Mailchimp


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
        values = template_vars(ctx)
        if autoescape:
            from markupsafe import escape

            values = _escape_all(values, escape)
        return _limited(template, values)
    except FatalConnectorError:
        raise
    except Exception as exc:  # noqa: BLE001 -- the template's own fault, the same on every retry
        raise FatalConnectorError(f"template error: {type(exc).__name__}: {str(exc)[:300]}") from None


def _limited(template: Template, values: dict[str, Any]) -> str:
    """Render with an output cap and a deadline checked by a per-thread trace function."""
    deadline = time.monotonic() + MAX_SECONDS
    ticks = 0

    def trace(frame: Any, event: str, arg: Any) -> Any:
        nonlocal ticks
        ticks += 1
        if ticks % 1000 == 0 and time.monotonic() > deadline:
            raise FatalConnectorError(f"template error: rendering took longer than {MAX_SECONDS:g} s")
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        out, size = [], 0
        for chunk in template.generate(values):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise FatalConnectorError(f"template error: the output is longer than {MAX_OUTPUT // 1024} KB")
            out.append(chunk)
        return "".join(out)
    finally:
        sys.settrace(previous)


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

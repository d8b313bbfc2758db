"""The action contract: a declarative class with a parameter schema and one ``execute``.

The outbox calls ``execute`` at least once and the connector's idempotency key makes it
take effect exactly once. Parameters are validated by ``params_schema`` when a journey is
published, so a business user sees a bad parameter next to its field, not at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, ClassVar, Generic, TypeVar

from marshmallow import RAISE, Schema

from crm_journeys.connectors.base import Connector

P = TypeVar("P")


@dataclass(frozen=True)
class ContactView:
    """The journey's contact as an action sees it (from the mirror)."""

    id: int
    external_id: str
    email: str | None
    fields: dict[str, Any]
    tags: list[str]


@dataclass
class ActionContext:
    tenant_id: int
    connector: Connector
    contact: ContactView
    idempotency_key: str
    now: datetime
    outbox_id: int
    journey_id: int | None
    emit: Callable[[Any], None]  # queue a canonical IncomingEvent (tags added, email sent...)
    settings: dict[str, Any] = field(default_factory=dict)
    services: Any = None  # the Runtime (database, clock): for actions that keep their own rows (email)
    # what an action keeps for the rest of the outbox pass (an open SMTP connection); the
    # outbox calls ``close()`` on each value when the pass ends
    pass_cache: dict[str, Any] = field(default_factory=dict)
    # the journey step that queued the row, as its claim read it (a timeline note, settings)
    instance_id: int | None = None
    step: str = ""
    version_id: int | None = None

    @property
    def contact_ref(self) -> str:
        return self.contact.external_id


@dataclass(frozen=True)
class ActionResult:
    """What happened, in words an operator reads in the outbox view.

    ``idempotent`` says whether running the row again, after a crash that lost its close,
    would change nothing: the effect is a record the host keeps once per idempotency key
    (every connector write of a lead, activity or email, by the connector contract), or
    there is no outside effect at all (only de-duplicated events emitted). The outbox may
    then close the row together with the rest of its batch. The default, False, is the
    safe answer: sends nobody de-duplicates (SMTP, third-party webhooks) and state changes
    a later row may overwrite (tags, fields) are closed one by one, right after they ran.
    """

    summary: str
    external_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    idempotent: bool = False

    @classmethod
    def done(cls, summary: str, external_id: str | None = None, *, idempotent: bool = False,
             **data: Any) -> ActionResult:
        return cls(summary, external_id, data, idempotent)


class HoldUntil(Exception):  # noqa: N818  (not an error: the outbox's "not yet")
    """Raised by an action that may not run yet (quiet hours, a contact policy's cap):
    the outbox runs the row again at ``until`` without counting an attempt."""

    def __init__(self, until: datetime, reason: str):
        super().__init__(reason)
        self.until, self.reason = until, reason


class ParamsSchema(Schema):
    class Meta:
        unknown = RAISE


class Action(Generic[P]):
    """Subclass with ``name``, ``label``, ``params_schema``; implement ``execute``."""

    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str] = ""
    params_schema: ClassVar[type[Schema]]

    def load_params(self, raw: dict[str, Any]) -> P:
        return _schema(self.params_schema).load(raw)

    def execute(self, ctx: ActionContext, params: P) -> ActionResult:
        raise NotImplementedError

    @classmethod
    def host(cls, raw_params: dict[str, Any]) -> str:
        """The host a delivery of this action talks to, for its delivery lane: rows of one
        tenant and host are parked and paced together (``runtime.lanes``), so a CRM that is
        down holds back that tenant's CRM actions and nothing else. Default: the CRM."""
        return "crm"

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The action's form, for the catalogue endpoint and the builder."""
        from crm_journeys.actions.describe import describe_schema

        return {"name": cls.name, "label": cls.label, "description": cls.description,
                "params": describe_schema(cls.params_schema)}


@cache
def _schema(schema_class: type[Schema]) -> Schema:
    """One instance per parameter schema: building one costs more than loading with it,
    and the outbox loads parameters for every row."""
    return schema_class()

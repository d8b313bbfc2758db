"""The one interface every host CRM adapter implements, and the canonical records it speaks.

The runtime never sees a host's own shapes: adapters map them to ``CanonicalContact`` on
the way in and from ``LeadSpec`` / ``ActivitySpec`` / ``EmailSpec`` on the way out. Every
write takes an ``idempotency_key`` and must leave exactly one record however often it is
repeated (upsert by external id, or a marker field searched before creating).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

ActivityKind = Literal["task", "phone_call", "appointment"]


@dataclass
class CanonicalContact:
    """A contact as journeys see it, whatever the host calls its fields."""

    external_id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    owner: str | None = None
    time_zone: str | None = None
    language: str | None = None
    birthday: str | None = None  # ISO date, year may be 1900 when unknown
    created_at: datetime | None = None
    # When the contact joined, as ISO 8601: the host's own created / subscribed date
    # (``signup_anniversary`` and date conditions read it), mapped by each connector.
    signup_date: str | None = None
    modified_at: datetime | None = None
    version: str | None = None  # host's record version; equal versions are not re-processed
    tags: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    deleted: bool = False
    echo: bool = False  # last change made by our own integration user: do not re-trigger

    def as_fields(self) -> dict[str, Any]:
        """Flat field map the condition language addresses (custom fields last)."""
        base = {
            "email": self.email, "first_name": self.first_name, "last_name": self.last_name,
            "phone": self.phone, "owner": self.owner, "time_zone": self.time_zone,
            "language": self.language, "birthday": self.birthday,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "signup_date": self.signup_date,
        }
        base.update(self.fields)
        return {k: v for k, v in base.items() if v is not None}


@dataclass
class SyncPage:
    """One page of an initial or incremental sync; ``cursor`` resumes after it."""

    contacts: list[CanonicalContact]
    cursor: str | None
    done: bool
    total: int | None = None


@dataclass
class WebhookHint:
    """A host's notification that something changed; fetch the record before trusting it."""

    event_id: str
    object_type: str
    object_id: str
    change: str  # created | updated | deleted | property_change | ...
    occurred_at: datetime | None = None
    echo: bool = False  # caused by our own integration user: do not re-trigger
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class InboundRequest:
    """What a webhook endpoint received, transport-neutral so adapters need no Flask."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    received_at: datetime

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lname:
                return value
        return None


@dataclass
class LeadSpec:
    title: str
    source: str = "crm_journeys"
    owner: str | None = None
    value: float | None = None
    description: str = ""


@dataclass
class ActivitySpec:
    """A task, phone call or appointment assigned to a salesperson."""

    kind: ActivityKind
    subject: str
    due_at: datetime
    owner: str | None = None
    description: str = ""
    duration_minutes: int = 30


@dataclass
class EmailSpec:
    subject: str
    html: str
    text: str
    from_address: str | None = None
    email_id: str | None = None  # the journey's email identifier, for engagement events


@dataclass(frozen=True)
class Owner:
    """A host user who can own leads and activities: the host's id for them, and the name
    and email people know them by (the builder's owner picker shows these)."""

    id: str
    name: str
    email: str | None = None


# A journey's owner parameter may name "the contact's owner" instead of a person: it is
# resolved from the contact's own owner when the action runs (see actions/sales.py).
CONTACT_OWNER = "contact_owner"


@dataclass
class WriteResult:
    """What a write left in the host: its id there, and whether this call created it."""

    external_id: str
    created: bool
    detail: str = ""


class Connector(ABC):
    """A host CRM seen through crm_journeys' eyes.

    Subclasses are mostly declarative: ``name``, ``label``, ``capabilities`` and the field
    map, plus the HTTP calls. Construct with the tenant's settings and decrypted
    credentials; never log the latter.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    # Known capabilities: "webhooks" (verify/parse_webhook), "signed_webhooks" (the
    # signature covers the body), "deletes" (sync reports deletions), "echo" (sync flags
    # our own changes), "log_email", "send_email", "phone_call", "appointment" (native
    # activity kinds, else mapped to tasks), "owners" (``list_owners`` is the host's
    # complete list of assignable users).
    capabilities: ClassVar[frozenset[str]] = frozenset()
    # Most deliveries to this host at once for one tenant (None: the delivery lane's
    # share). A CRM embedded in our own database gains nothing from concurrent writes.
    concurrency: ClassVar[int | None] = None

    def __init__(self, settings: dict[str, Any] | None = None,
                 credentials: dict[str, Any] | None = None, **context: Any):
        self.settings = settings or {}
        self.credentials = credentials or {}
        self.context = context

    # --- reading ------------------------------------------------------------------
    @abstractmethod
    def sync_page(self, cursor: str | None, page_size: int = 100) -> SyncPage:
        """One page of contacts. ``cursor=None`` starts an initial sync; the returned
        cursor of the last page (``done=True``) is where incremental syncs resume."""

    @abstractmethod
    def fetch_contact(self, external_id: str) -> CanonicalContact | None:
        """The current record, or ``None`` when it was deleted."""

    def verify_webhook(self, request: InboundRequest) -> None:
        """Raise ``WebhookRejected`` unless the request is provably from the host."""
        from crm_journeys.errors import WebhookRejected

        raise WebhookRejected(f"{self.name} sends no webhooks")

    def parse_webhook(self, request: InboundRequest) -> list[WebhookHint]:
        return []

    # --- writing ------------------------------------------------------------------
    @abstractmethod
    def create_lead(self, contact_ref: str, spec: LeadSpec, idempotency_key: str) -> WriteResult: ...

    @abstractmethod
    def create_activity(self, contact_ref: str, spec: ActivitySpec,
                        idempotency_key: str) -> WriteResult: ...

    @abstractmethod
    def add_tag(self, contact_ref: str, tag: str, idempotency_key: str) -> WriteResult: ...

    @abstractmethod
    def remove_tag(self, contact_ref: str, tag: str, idempotency_key: str) -> WriteResult: ...

    @abstractmethod
    def update_fields(self, contact_ref: str, values: dict[str, Any],
                      idempotency_key: str) -> WriteResult: ...

    def send_email(self, contact_ref: str, email: EmailSpec, idempotency_key: str) -> WriteResult:
        """Send through the host when it can; the default raises so SMTP is used instead."""
        raise NotImplementedError(f"{self.name} cannot send email; configure SMTP")

    def log_email(self, contact_ref: str, email: EmailSpec, idempotency_key: str) -> WriteResult:
        """Record an email sent elsewhere (SMTP) on the contact's timeline, idempotently.

        Optional (capability ``log_email``); the default raises ``NotImplementedError``.
        """
        raise NotImplementedError(f"{self.name} cannot log email activity")

    # --- installation -------------------------------------------------------------
    def ensure_schema(self) -> list[str]:
        """Create what the adapter needs in the host (unique key properties, tag fields).

        Idempotent: run at install and whenever in doubt. Returns what it created.
        """
        return []

    # --- owners -------------------------------------------------------------------
    def list_owners(self) -> list[Owner]:
        """The host's active users that leads and activities can be assigned to.

        Connectors that can say declare the capability ``owners``; then an owner a journey
        names by email is resolved to the host's id at publish, and an unknown one is
        refused there. The default knows none (owners are passed through as written).
        """
        return []

    def discover_settings(self) -> dict[str, Any]:
        """Settings install can learn from the host instead of asking the admin (the
        integration user whose changes are our own echoes). Raises ``ConnectorError`` when
        the credentials cannot do the job (a role too weak), saying what to fix."""
        return {}

    # --- pickers for the builder --------------------------------------------------
    def picker_values(self, picker: str) -> list[str]:
        """Values for a builder picker (tags, groups, fields, owners, ...); empty if unknown."""
        return []

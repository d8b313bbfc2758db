"""The embedded sandbox CRM: the default host, kept in the local database.

It stores contacts, tags, groups, leads, tasks, calls, appointments, emails and orders,
behind the same interface as real CRMs, so the demo and the tests exercise the very
code paths a HubSpot install does. Idempotency is a unique (kind, key) per record.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from crm_journeys.connectors.base import (
    ActivitySpec,
    CanonicalContact,
    Connector,
    EmailSpec,
    LeadSpec,
    Owner,
    SyncPage,
    WriteResult,
)
from crm_journeys.connectors.mapping import signup_of
from crm_journeys.errors import FatalConnectorError
from crm_journeys.storage import bulk
from crm_journeys.storage.models import SandboxContact, SandboxRecord

CORE = ("first_name", "last_name")
RECORD_KEY = ("tenant_id", "kind", "idempotency_key")


class SandboxConnector(Connector):
    name = "sandbox"
    label = "Sandbox CRM (built in)"
    capabilities = frozenset({"contacts", "leads", "tasks", "phone_calls", "appointments",
                              "tags", "fields", "email"})
    concurrency = 1  # its writes go to our own database: in parallel they only contend

    @property
    def _db(self) -> Any:
        return self.context["database"]

    @property
    def _tenant(self) -> int:
        return int(self.context["tenant_id"])

    def _now(self) -> datetime:
        clock = self.context.get("clock")
        return clock.now() if clock else datetime.now(UTC)

    # --- reading ----------------------------------------------------------------------
    def sync_page(self, cursor: str | None, page_size: int = 100) -> SyncPage:
        after_id = int(cursor or 0)
        with self._db.unit_of_work() as s:
            rows = list(s.scalars(select(SandboxContact).where(SandboxContact.tenant_id == self._tenant,
                                                               SandboxContact.id > after_id)
                                  .order_by(SandboxContact.id).limit(page_size)))
            contacts = [to_canonical(r) for r in rows]
        last = str(rows[-1].id) if rows else (cursor or "0")
        return SyncPage(contacts, last, done=len(rows) < page_size)

    def fetch_contact(self, external_id: str) -> CanonicalContact | None:
        with self._db.unit_of_work() as s:
            row = self._find(s, external_id, create=False)
            return to_canonical(row) if row else None

    # --- writing ----------------------------------------------------------------------
    def create_lead(self, contact_ref: str, spec: LeadSpec, idempotency_key: str) -> WriteResult:
        return self._record(contact_ref, "lead", idempotency_key,
                            {"title": spec.title, "owner": spec.owner, "value": spec.value,
                             "description": spec.description, "source": spec.source, "status": "new"})

    def create_activity(self, contact_ref: str, spec: ActivitySpec, idempotency_key: str) -> WriteResult:
        return self._record(contact_ref, spec.kind, idempotency_key,
                            {"subject": spec.subject, "owner": spec.owner, "due_at": spec.due_at.isoformat(),
                             "description": spec.description, "duration_minutes": spec.duration_minutes,
                             "status": "open"})

    def send_email(self, contact_ref: str, email: EmailSpec, idempotency_key: str) -> WriteResult:
        return self._record(contact_ref, "email", idempotency_key,
                            {"subject": email.subject, "text": email.text, "email_id": email.email_id})

    def add_tag(self, contact_ref: str, tag: str, idempotency_key: str) -> WriteResult:
        return self._change(contact_ref, lambda c: _with(c, "tags", tag, True))

    def remove_tag(self, contact_ref: str, tag: str, idempotency_key: str) -> WriteResult:
        return self._change(contact_ref, lambda c: _with(c, "tags", tag, False))

    def update_fields(self, contact_ref: str, values: dict[str, Any], idempotency_key: str) -> WriteResult:
        def patch(c: SandboxContact) -> bool:
            core = {k: v for k, v in values.items() if k in CORE}
            rest = {k: v for k, v in values.items() if k not in CORE}
            for k, v in core.items():
                setattr(c, k, v or "")
            merged = {**(c.fields or {}), **rest}
            changed = bool(core) or merged != (c.fields or {})
            c.fields = merged
            return changed

        return self._change(contact_ref, patch)

    def list_owners(self) -> list[Owner]:
        """The owners contacts carry: the sandbox has no user directory, owners are free
        text (so it does not declare ``owners`` and publish takes any owner as written)."""
        return [Owner(name, name, name if "@" in name else None)
                for name in self.picker_values("owners")]

    def picker_values(self, picker: str) -> list[str]:
        with self._db.unit_of_work() as s:
            rows = list(s.scalars(select(SandboxContact).where(SandboxContact.tenant_id == self._tenant)))
        if picker in ("tags", "groups"):
            return sorted({v for r in rows for v in getattr(r, picker) or []})
        if picker == "fields":
            return sorted({"email", "first_name", "last_name", "signup_date",
                           *{k for r in rows for k in r.fields or {}}})
        if picker == "owners":
            return sorted({str(r.fields.get("owner")) for r in rows if (r.fields or {}).get("owner")})
        return []

    # --- plumbing ---------------------------------------------------------------------
    def _record(self, contact_ref: str, kind: str, key: str, data: dict[str, Any]) -> WriteResult:
        """One record per (kind, key): a repeated write finds the first one and adds none.

        Plain statements built once, on the session's connection: the outbox calls this for
        every email it delivers on the default install, and ORM objects and statement
        building cost more than the two or three small statements themselves."""
        with self._db.unit_of_work() as s:
            conn = s.connection()
            row = {"tenant_id": self._tenant, "contact_id": self._contact_id(s, contact_ref), "kind": kind,
                   "idempotency_key": key, "data": data, "created_at": self._now()}
            added = _insert(conn, SandboxRecord, RECORD_KEY, row)
            found = added or conn.execute(_RECORD_ID, {"tenant": self._tenant, "kind": kind, "key": key}).scalar()
        return WriteResult(str(found), created=added is not None)

    def _contact_id(self, s: Session, ref: str) -> int:
        """The id of the sandbox contact ``ref`` names, an ``email:`` ref first seen here
        added. Email refs and existing ids take the short way; anything else goes through
        ``_find``, which a subclass may widen (the dry-run CRM accepts any ref)."""
        conn = s.connection()
        found = None
        if ref.startswith("email:"):
            found = self._email_contact_id(conn, ref[6:].lower())
        elif ref.isdigit():
            found = conn.execute(_CONTACT_BY_ID, {"tenant": self._tenant, "id": int(ref)}).scalar()
        if found is None:
            contact = self._find(s, ref, create=True)
            if contact is None:
                raise FatalConnectorError(f"no sandbox contact {ref!r}")
            found = contact.id
        return int(found)

    def _email_contact_id(self, conn: Connection, email: str) -> int | None:
        """If another writer adds the same email first, its row is read back."""
        by_email = {"tenant": self._tenant, "email": email}
        found = conn.execute(_CONTACT_BY_EMAIL, by_email).scalar()
        if found is None:
            now = self._now()
            found = _insert(conn, SandboxContact, ("tenant_id", "email"), {
                "tenant_id": self._tenant, "email": email, "first_name": "", "last_name": "", "fields": {},
                "tags": [], "groups": [], "created_at": now, "modified_at": now, "version": 1,
            }) or conn.execute(_CONTACT_BY_EMAIL, by_email).scalar()
        return found

    def _change(self, contact_ref: str, mutate: Any) -> WriteResult:
        with self._db.unit_of_work() as s:
            contact = self._find(s, contact_ref, create=True)
            assert contact is not None
            if mutate(contact):
                contact.version += 1
                contact.modified_at = self._now()
            return WriteResult(str(contact.id), created=False)

    def _find(self, s: Session, ref: str, *, create: bool) -> SandboxContact | None:
        """Refs are sandbox ids, or ``email:<address>`` for contacts first seen in an event."""
        query = select(SandboxContact).where(SandboxContact.tenant_id == self._tenant)
        if ref.startswith("email:"):
            email = ref[6:].lower()
            row = s.scalar(query.where(SandboxContact.email == email))
            if row is None and create:
                now = self._now()
                row = SandboxContact(tenant_id=self._tenant, email=email, fields={}, tags=[], groups=[],
                                     created_at=now, modified_at=now, version=1)
                s.add(row)
                s.flush()
            return row
        if not ref.isdigit():
            raise FatalConnectorError(f"not a sandbox contact id: {ref!r}")
        return s.scalar(query.where(SandboxContact.id == int(ref)))


def _with(contact: SandboxContact, attr: str, item: str, present: bool) -> bool:
    items = list(getattr(contact, attr) or [])
    if (item in items) == present:
        return False
    setattr(contact, attr, items + [item] if present else [i for i in items if i != item])
    return True


def to_canonical(row: SandboxContact) -> CanonicalContact:
    fields = dict(row.fields or {})
    known = {k: fields.pop(k, None) for k in ("phone", "owner", "time_zone", "language", "birthday")}
    known["signup_date"] = fields.pop("signup_date", None) or signup_of(row.created_at)
    return CanonicalContact(external_id=str(row.id), email=row.email, first_name=row.first_name or None,
                            last_name=row.last_name or None, created_at=row.created_at,
                            modified_at=row.modified_at, version=str(row.version), tags=list(row.tags or []),
                            groups=list(row.groups or []), fields=fields, **known)


# Statements of the write path, built once (see ``_record``).
_CONTACT_BY_EMAIL = select(SandboxContact.id).where(SandboxContact.tenant_id == bindparam("tenant"),
                                                    SandboxContact.email == bindparam("email"))
_CONTACT_BY_ID = select(SandboxContact.id).where(SandboxContact.tenant_id == bindparam("tenant"),
                                                 SandboxContact.id == bindparam("id"))
_RECORD_ID = select(SandboxRecord.id).where(SandboxRecord.tenant_id == bindparam("tenant"),
                                            SandboxRecord.kind == bindparam("kind"),
                                            SandboxRecord.idempotency_key == bindparam("key"))


def _insert(conn: Connection, model: Any, conflict: tuple[str, ...], row: dict[str, Any]) -> int | None:
    """The idempotent write: the new row's id, or None when ``conflict`` found one."""
    added = bulk.insert_ignoring_returning(conn, model.__table__, [row], conflict, ("id",))
    return int(added[0][0]) if added else None

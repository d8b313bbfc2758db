"""Django-CRM ("BottleCRM"): its REST API as ``openapi.yaml`` describes it.

BottleCRM sends no webhooks and its listings have no "modified since" filter, so changes
come from the activity feed: the newest 50 entries, newest first, with no "since"
parameter. Each poll reads the feed, takes the entries it has not seen (an overlap window
catches late ones), and fetches the contacts they name. When more than 50 entries
happened between two polls the feed cannot prove nothing was missed, and the adapter falls
back to a full scan filtered on ``updated_at``. Creates answer with no id: a lead or task
carries a marker with its idempotency key in its notes and is found again by its title,
the contact's email (leads) and that marker; phone calls and appointments become tasks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from crm_journeys.clock import Clock
from crm_journeys.connectors.base import (
    ActivitySpec,
    CanonicalContact,
    Connector,
    LeadSpec,
    SyncPage,
    WriteResult,
)
from crm_journeys.connectors.cursor import SyncState
from crm_journeys.connectors.http import (
    Auth,
    Call,
    HttpClient,
    OffsetPaginator,
    client_options,
    long_wait_rule,
)
from crm_journeys.connectors.mapping import RewritesTags, canonical, marker, parse_time, with_marker
from crm_journeys.errors import RetriableConnectorError

FIELDS = ("email", "first_name", "last_name", "phone")
FEED_SIZE = 50
CONTACTS = OffsetPaginator(items=("contact_obj_list",), total=("contacts_count",))
LEADS = OffsetPaginator(items=("open_leads", "open_leads"), total=("open_leads", "leads_count"))
TASKS = OffsetPaginator(items=("tasks",), total=("tasks_count",))
KIND_NOTE = {"phone_call": "Phone call", "appointment": "Appointment"}


class BottleCrmConnector(RewritesTags, Connector):
    """A BottleCRM organisation reached with a personal access token (``bcrm_pat_...``)."""

    name = "bottlecrm"
    label = "BottleCRM (Django-CRM)"
    capabilities = frozenset({"deletes", "echo"})
    overlap = timedelta(minutes=2)

    def __init__(self, settings: dict[str, Any] | None = None,
                 credentials: dict[str, Any] | None = None, **context: Any):
        super().__init__(settings, credentials, **context)
        self.clock: Clock = context.get("clock") or Clock()
        self.integration_user = self.settings.get("integration_user_id")
        self._tags: dict[str, str] | None = None  # name -> id
        url = self.settings["url"].rstrip("/")
        self.http = HttpClient(
            url, account=f"bottlecrm:{urlsplit(url).netloc}",
            auth=Auth.bearer(self.credentials["token"]), budget_rule=long_wait_rule(60),
            rate=self.settings.get("requests_per_second", 5.0), burst=10,
            **client_options(context))

    # --- reading --------------------------------------------------------------------
    def sync_page(self, cursor: str | None, page_size: int = 100) -> SyncPage:
        state = SyncState.decode(cursor)
        if state is None:  # where the feed stands now is where changes will be read from
            state = SyncState(phase="full", extra=self._feed_mark(self._feed(1)))
        if state.phase in ("full", "scan"):
            return self._scan_page(state, page_size)
        if not state.extra.get("pending"):
            self._read_feed(state)
            if state.phase == "scan":
                return self._scan_page(state, page_size)
        return self._pending_page(state, page_size)

    def _scan_page(self, state: SyncState, page_size: int) -> SyncPage:
        page = self.http.page(Call("GET", "/api/contacts/"), CONTACTS, state.token, page_size)
        contacts = [self._contact(row) for row in page.items]
        if state.phase == "scan":  # a fallback scan only wants what changed since the mark
            floor = parse_time(state.since)
            contacts = state.fresh([c for c in contacts
                                    if c.modified_at and floor and c.modified_at >= floor])
        state.observe(contacts, self.overlap)
        state.token = page.next
        done = page.next is None
        if done:
            state.phase, state.token = "feed", None
            state.extra.update(state.extra.pop("scan_mark", {}))
        return SyncPage(contacts, state.encode(), done, page.total)

    def _read_feed(self, state: SyncState) -> None:
        feed = self._feed(FEED_SIZE)
        mark = parse_time(state.extra.get("feed_at"))
        seen = set(state.extra.get("feed_seen", []))
        floor = mark - self.overlap if mark else None
        continuous = (len(feed) < FEED_SIZE or mark is None
                      or any(_at(a) <= mark for a in feed))
        if not continuous:  # the window was overrun: scan everything changed since the mark
            state.phase, state.token = "scan", None
            state.since = floor.isoformat() if floor else None
            state.extra["scan_mark"] = self._feed_mark(feed)
            return
        fresh = [a for a in reversed(feed) if a["id"] not in seen
                 and (floor is None or _at(a) >= floor) and not _delivered(state, a)]
        pending: dict[str, list[Any]] = {}
        for entry in fresh:  # oldest first; the last word on each contact wins
            ours = bool(self.integration_user) and entry["user"]["id"] == self.integration_user
            pending.pop(entry["entity_id"], None)
            pending[entry["entity_id"]] = [entry["action"] == "DELETE", ours]
        state.extra["pending"] = [[k, *v] for k, v in pending.items()]
        state.extra.update(self._feed_mark(feed, keep=seen, floor=floor))

    def _pending_page(self, state: SyncState, page_size: int) -> SyncPage:
        pending = state.extra.get("pending", [])
        batch, state.extra["pending"] = pending[:page_size], pending[page_size:]
        contacts = []
        for entity_id, deleted, ours in batch:
            contact = None if deleted else self.fetch_contact(entity_id)
            if contact is None:
                contact = CanonicalContact(external_id=entity_id, deleted=True,
                                           version=f"deleted:{entity_id}")
            contact.echo = ours
            contacts.append(contact)
        contacts = state.fresh(contacts)
        state.observe(contacts, self.overlap)
        return SyncPage(contacts, state.encode(), not state.extra["pending"])

    def _feed(self, limit: int) -> list[dict[str, Any]]:
        return self.http.get("/api/activities/", params={"entity_type": "Contact",
                                                         "limit": limit}) or []

    def _feed_mark(self, feed: list[dict[str, Any]], keep: set[str] | None = None,
                   floor: datetime | None = None) -> dict[str, Any]:
        """The newest feed time read, and the entry ids inside the overlap window."""
        stamps = [parse_time(a["timestamp"]) for a in feed]
        newest = max([s for s in stamps if s], default=None)
        if newest is None:
            return {"feed_at": floor.isoformat() if floor else None,
                    "feed_seen": sorted(keep or ())}
        window = newest - self.overlap
        ids = {a["id"] for a, s in zip(feed, stamps, strict=True) if s and s >= window}
        return {"feed_at": newest.isoformat(), "feed_seen": sorted(ids)}

    def fetch_contact(self, external_id: str) -> CanonicalContact | None:
        body = self.http.get(f"/api/contacts/{external_id}/", allow_404=True)
        if not body or not body["contact_obj"].get("is_active", True):
            return None
        return self._contact(body["contact_obj"])

    def _contact(self, row: dict[str, Any]) -> CanonicalContact:
        if set(row.get("tags") or []) - set(self._tag_ids().values()):
            self._tags = None  # a tag made since we last looked
        names = {v: k for k, v in self._tag_ids().items()}
        owners = row.get("assigned_to") or []
        values = {f: row.get(f) for f in FIELDS}
        values["owner"] = owners[0]["id"] if owners else None
        return canonical(
            row["id"], values,
            created_at=parse_time(row.get("created_at")),
            modified_at=parse_time(row.get("updated_at")), version=row.get("updated_at"),
            tags=[names[t] for t in row.get("tags") or [] if t in names],
            fields={k: row[k] for k in ("organization", "title", "department", "country")
                    if row.get(k)})

    # --- writing --------------------------------------------------------------------
    def create_lead(self, contact_ref: str, spec: LeadSpec, idempotency_key: str) -> WriteResult:
        contact = self.fetch_contact(contact_ref)
        email = contact.email if contact else None
        found = self._find_lead(spec.title, email, idempotency_key)
        if found:
            return WriteResult(found, created=False)
        body = {"title": spec.title, "first_name": contact.first_name if contact else None,
                "last_name": contact.last_name if contact else None, "email": email,
                "description": with_marker(spec.description, idempotency_key),
                "contacts": [contact_ref], "assigned_to": [spec.owner] if spec.owner else [],
                "teams": [], "source": "other",
                "opportunity_amount": f"{spec.value:.2f}" if spec.value is not None else None}
        self.http.post("/api/leads/", json={k: v for k, v in body.items() if v is not None})
        return self._found_after_create(self._find_lead(spec.title, email, idempotency_key))

    def create_activity(self, contact_ref: str, spec: ActivitySpec,
                        idempotency_key: str) -> WriteResult:
        found = self._find_task(spec.subject, idempotency_key)
        if found:
            return WriteResult(found, created=False)
        note = f"{KIND_NOTE[spec.kind]} at {spec.due_at.isoformat()}\n\n" if spec.kind in KIND_NOTE else ""
        self.http.post("/api/tasks/", json={
            "title": spec.subject, "status": "New", "priority": "Medium",
            "due_date": spec.due_at.date().isoformat(), "contacts": [contact_ref],
            "description": with_marker(note + spec.description, idempotency_key),
            "assigned_to": [spec.owner] if spec.owner else [], "teams": []})
        return self._found_after_create(self._find_task(spec.subject, idempotency_key))

    def update_fields(self, contact_ref: str, values: dict[str, Any],
                      idempotency_key: str) -> WriteResult:
        self.http.patch(f"/api/contacts/{contact_ref}/", json=values)
        return WriteResult(contact_ref, created=False, detail=f"updated {sorted(values)}")

    def _retag(self, contact_ref: str, tag: str, present: bool) -> WriteResult:
        # Contact tags are readable as ids; writing them is beyond the published
        # description (no "tags" in CreateContactRequest), which the server accepts.
        tag_id = self._tag_ids().get(tag) or (self._create_tag(tag) if present else None)
        row = self.http.get(f"/api/contacts/{contact_ref}/")["contact_obj"]
        tags = list(row.get("tags") or [])
        if tag_id is None or (tag_id in tags) == present:
            return WriteResult(contact_ref, created=False, detail="unchanged")
        tags = [*tags, tag_id] if present else [t for t in tags if t != tag_id]
        self.http.patch(f"/api/contacts/{contact_ref}/", json={"tags": tags})
        return WriteResult(contact_ref, created=False, detail="changed")

    def _tag_ids(self) -> dict[str, str]:
        if self._tags is None:
            self._tags = {t["name"]: t["id"] for t in self.http.get("/api/tags/")["tags"]}
        return self._tags

    def _create_tag(self, name: str) -> str:
        body = self.http.post("/api/tags/", json={"name": name})
        self._tags = None  # a concurrent creator may have won: re-read next time
        return body["tag"]["id"]

    def _find_lead(self, title: str, email: str | None, key: str) -> str | None:
        call = Call("GET", "/api/leads/", params={"title": title})
        for lead in self.http.paginate(call, LEADS, page_size=50):
            if marker(key) in (lead.get("description") or "") and lead.get("email") == email:
                return lead["id"]
        return None

    def _find_task(self, title: str, key: str) -> str | None:
        """Task listings carry no notes, so each task with the title is opened."""
        call = Call("GET", "/api/tasks/", params={"title": title})
        for task in self.http.paginate(call, TASKS, page_size=50):
            if task.get("title") != title:
                continue
            detail = self.http.get(f"/api/tasks/{task['id']}/", allow_404=True)
            if detail and marker(key) in (detail["task_obj"].get("description") or ""):
                return task["id"]
        return None

    @staticmethod
    def _found_after_create(found: str | None) -> WriteResult:
        if found is None:  # created but not listed yet: the retry will find it
            raise RetriableConnectorError("bottlecrm: created record not found by its marker yet")
        return WriteResult(found, created=True)

    def picker_values(self, picker: str) -> list[str]:
        return sorted(self._tag_ids()) if picker == "tags" else []


def _at(entry: dict[str, Any]) -> datetime:
    """A feed entry's time; an entry without one sorts as the oldest possible."""
    return parse_time(entry.get("timestamp")) or datetime.min.replace(tzinfo=UTC)


def _delivered(state: SyncState, entry: dict[str, Any]) -> bool:
    """Whether a version at least as new as this feed entry already went out (the scan or
    an earlier poll delivered it), so the contact need not be fetched again."""
    known = state.seen.get(entry["entity_id"])
    if not known or entry["action"] == "DELETE":
        return False
    return bool(known[1] >= _at(entry).timestamp())

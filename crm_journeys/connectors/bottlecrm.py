"""Django-CRM ("BottleCRM"): its REST API as the real server answers (checked against the
backend at commit d3eb5f9 in the test suite, see docs/connectors.md), not only as
``openapi.yaml`` describes it.

BottleCRM sends no webhooks and its listings have no "modified since" filter, so changes
come from the activity feed: the newest 50 entries, newest first, with no "since"
parameter. Each poll reads the feed, takes the entries it has not seen (an overlap window
catches late ones), and fetches the contacts they name. When more than 50 entries
happened between two polls the feed cannot prove nothing was missed, and the adapter falls
back to a full scan filtered on ``updated_at``. Creates answer with no id: a task carries
a marker with its idempotency key in its notes and is found again among the contact's own
tasks (one contact detail read); a lead is found by the contact's email, which BottleCRM
keeps unique per organisation, so a contact that already has a lead keeps it; a converted
lead (listed nowhere but the global search, yet still holding its email) means the person
is a customer already, and the step says so instead of creating anything. Phone calls
and appointments become tasks. Deactivated contacts (``is_active`` false) count as deleted
everywhere: journeys should not write to people who left.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from crm_journeys.clock import Clock
from crm_journeys.connectors.base import (
    ActivitySpec,
    CanonicalContact,
    Connector,
    LeadSpec,
    Owner,
    SyncPage,
    WriteResult,
)
from crm_journeys.connectors.cursor import SyncState
from crm_journeys.connectors.explain import HostHints, explain
from crm_journeys.connectors.http import (
    Auth,
    Call,
    HttpClient,
    OffsetPaginator,
    client_options,
    default_message,
    long_wait_rule,
)
from crm_journeys.connectors.mapping import (
    RewritesTags,
    canonical,
    marker,
    parse_time,
    signup_of,
    with_marker,
)
from crm_journeys.errors import FatalConnectorError, RetriableConnectorError

FIELDS = ("email", "first_name", "last_name", "phone")
# What PATCH /api/contacts/{id}/ writes (CreateContactSerializer plus its many-to-many
# keys). Any other key answers 200 and writes nothing, so it is refused here instead.
WRITABLE = frozenset({"first_name", "last_name", "email", "phone", "organization", "title",
                      "department", "do_not_call", "linkedin_url", "address_line", "city",
                      "state", "postcode", "country", "description"})
FEED_SIZE = 50
SAME_SAVE = timedelta(seconds=1)  # a feed entry is written just after the save it records
HAS_LEAD = "the contact already has a lead (one per email in BottleCRM)"
LEAD_STATUS = "assigned"  # the lead board's first column; a lead with no status is on none
CONTACTS = OffsetPaginator(items=("contact_obj_list",), total=("contacts_count",))
USERS = OffsetPaginator(items=("active_users", "active_users"),
                        total=("active_users", "active_users_count"))
KIND_NOTE = {"phone_call": "Phone call", "appointment": "Appointment"}
# How long the organisation's people are trusted before being read again: a salesperson
# deactivated meanwhile would be dropped from an assignment without a word (the server
# keeps only active profiles of the organisation and answers 200 either way).
OWNERS_FRESH = timedelta(minutes=10)
HINTS = HostHints(
    "BottleCRM",
    unauthorized="the personal access token matches no active profile (revoked, expired or "
                 "mistyped); make a new one for the integration profile in BottleCRM and "
                 "reinstall with it",
    forbidden="the token's profile may not do this; grant it the ADMIN role on BottleCRM's "
              "team page (only admins list the organisation's users and create tags)")


def bottlecrm_message(response: Any) -> str:
    """The host's words led by what to fix. A token that matches nothing answers 403
    "Organization context is required" (its middleware finds no organisation), which is a
    refused credential, not a missing permission."""
    text = default_message(response)
    status = response.status_code
    if status == 403 and "rganization context" in text:
        status = 401
    return explain(HINTS, status, text)


def base_url(url: str) -> str:
    """The server's address whether the admin pasted it with or without ``/api``."""
    url = url.strip().rstrip("/")
    return url[:-4] if url.endswith("/api") else url


def slug(name: str) -> str:
    """Django's ``slugify``, which BottleCRM keys tags on ("VIP", "vip" and "V.I.P" are one
    tag there); re-implemented in a few lines rather than depending on Django."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text.lower())
    return re.sub(r"[-\s]+", "-", text).strip("-_")


class BottleCrmConnector(RewritesTags, Connector):
    """A BottleCRM organisation reached with a personal access token (``bcrm_pat_...``) of
    an ADMIN profile: a USER profile sees only the contacts assigned to it."""

    name = "bottlecrm"
    label = "BottleCRM (Django-CRM)"
    capabilities = frozenset({"deletes", "echo", "owners"})
    overlap = timedelta(minutes=2)

    def __init__(self, settings: dict[str, Any] | None = None,
                 credentials: dict[str, Any] | None = None, **context: Any):
        super().__init__(settings, credentials, **context)
        self.clock: Clock = context.get("clock") or Clock()
        self.integration_user = self.settings.get("integration_user_id")
        self._tags: list[dict[str, Any]] | None = None
        self._owners: dict[str, str] = {}  # profile id and lower-case email -> profile id
        self._owners_at: datetime | None = None
        url = base_url(self.settings["url"])
        self.http = HttpClient(
            url, account=f"bottlecrm:{urlsplit(url).netloc}",
            auth=Auth.bearer(self.credentials["token"]), budget_rule=long_wait_rule(60),
            message_of=bottlecrm_message,
            rate=self.settings.get("requests_per_second", 5.0), burst=10,
            **client_options(context))

    # --- installation ---------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        """The token's profile: its role, its profile id and the User id the feed shows."""
        return dict(self.http.get("/api/profile/")["user_obj"])

    def discover_settings(self) -> dict[str, Any]:
        """What install records: the integration user whose feed entries are our echoes.
        Refuses a token that cannot see every contact or create tags."""
        me = self.whoami()
        if me.get("role") != "ADMIN":
            raise FatalConnectorError(
                f"bottlecrm: the token is {(me.get('user_details') or {}).get('email', '?')}'s, "
                f"whose role is {me.get('role') or 'unknown'}; a USER sees only the contacts "
                "assigned to it and cannot create tags: use a token of an ADMIN profile",
                status=403)
        return {"integration_user_id": str(me["user_details"]["id"]),
                "integration_profile_id": str(me["id"])}

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
        if state.phase == "full":  # the first sync knows no one yet: a deactivation is no news
            contacts = [c for c in contacts if not c.deleted]
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
        before = _previous_entries(feed)
        fresh = [a for a in reversed(feed) if a["id"] not in seen
                 and (floor is None or _at(a) >= floor)
                 and not _delivered(state, a, before.get(a["id"]))]
        pending: dict[str, list[Any]] = {}
        for entry in fresh:  # oldest first; the last word on each contact wins
            pending.pop(entry["entity_id"], None)
            pending[entry["entity_id"]] = [entry["action"] == "DELETE", self._ours(entry)]
        state.extra["pending"] = [[k, *v] for k, v in pending.items()]
        state.extra.update(self._feed_mark(feed, keep=seen, floor=floor))

    def _ours(self, entry: dict[str, Any]) -> bool:
        """Whether our integration user made the change; an entry whose editor was deleted
        since (``"user": null``) is someone else's."""
        user = entry.get("user") or {}
        return bool(self.integration_user) and str(user.get("id")) == str(self.integration_user)

    def _pending_page(self, state: SyncState, page_size: int) -> SyncPage:
        pending = state.extra.get("pending", [])
        batch, state.extra["pending"] = pending[:page_size], pending[page_size:]
        contacts = []
        for entity_id, deleted, ours in batch:
            contact = None if deleted else self.fetch_contact(entity_id)
            if contact is None:
                contact = _gone(entity_id)
            contact.echo = ours
            contacts.append(contact)
        contacts = state.fresh(contacts)
        state.observe(contacts, self.overlap)
        return SyncPage(contacts, state.encode(), not state.extra["pending"])

    def _feed(self, limit: int) -> list[dict[str, Any]]:
        """The newest feed entries about contacts. The server wraps them in an envelope
        (``{"error", "count", "activities"}``) where ``openapi.yaml`` shows a bare list."""
        body = self.http.get("/api/activities/", params={"entity_type": "Contact",
                                                         "limit": limit})
        rows = body.get("activities") if isinstance(body, dict) else body
        return list(rows or [])

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
        body = self._contact_detail(external_id)
        if not body:
            return None
        contact = self._contact(body["contact_obj"])
        return None if contact.deleted else contact

    def _contact_detail(self, external_id: str) -> dict[str, Any] | None:
        body = self.http.get(f"/api/contacts/{external_id}/", allow_404=True)
        return body if isinstance(body, dict) and body.get("contact_obj") else None

    def _contact(self, row: dict[str, Any]) -> CanonicalContact:
        if not row.get("is_active", True):
            return _gone(str(row["id"]), row.get("updated_at"))
        tag_ids = [_ref(t) for t in row.get("tags") or []]
        names = {t["id"]: t["name"] for t in self._tag_rows(refresh=tag_ids)}
        owners = row.get("assigned_to") or []
        values = {f: row.get(f) or None for f in FIELDS}
        values["owner"] = _ref(owners[0]) if owners else None
        return canonical(
            row["id"], values, created_at=parse_time(row.get("created_at")),
            signup_date=signup_of(row.get("created_at")),
            modified_at=parse_time(row.get("updated_at")), version=row.get("updated_at"),
            tags=[names[t] for t in tag_ids if t in names],
            fields={k: row[k] for k in ("organization", "title", "department", "country")
                    if row.get(k)})

    # --- writing --------------------------------------------------------------------
    def create_lead(self, contact_ref: str, spec: LeadSpec, idempotency_key: str) -> WriteResult:
        """One lead per email per organisation is BottleCRM's rule: a contact that already
        has one keeps it (reported as found, not created), whoever made it."""
        contact = self.fetch_contact(contact_ref)
        if contact is None:
            raise FatalConnectorError(f"bottlecrm: contact {contact_ref} is deleted or deactivated",
                                      status=404)
        found = self._find_lead(contact, idempotency_key)
        if found:
            return WriteResult(found[0], created=False, detail="" if found[1] else HAS_LEAD)
        owner = self.resolve_owner(spec.owner)
        body = {"title": spec.title, "first_name": contact.first_name,
                "last_name": contact.last_name, "email": contact.email, "status": LEAD_STATUS,
                "description": with_marker(spec.description, idempotency_key),
                "contacts": [contact_ref], "assigned_to": [owner] if owner else [],
                "teams": [], "source": "other",
                "opportunity_amount": f"{spec.value:.2f}" if spec.value is not None else None}
        try:
            self.http.post("/api/leads/", json={k: v for k, v in body.items() if v is not None})
        except FatalConnectorError as exc:
            if exc.status != 400 or not contact.email:
                raise
            return self._email_taken(contact, idempotency_key, exc)
        again = self._find_lead(contact, idempotency_key)
        return self._found_after_create(again[0] if again else None)

    def _email_taken(self, contact: CanonicalContact, key: str,
                     refused: FatalConnectorError) -> WriteResult:
        """After a refused create: whose lead holds the email. Someone may have made one
        meanwhile; otherwise it is a converted lead, which BottleCRM lists nowhere but still
        counts in its one lead per email. That person is a customer already: the step is
        done without a write and says so on the timeline, rather than dead-lettering a 400
        no one can act on. No such lead: the host's refusal stands."""
        found = self._find_lead(contact, key)
        if found:
            return WriteResult(found[0], created=False, detail="" if found[1] else HAS_LEAD)
        converted = self._converted_lead(contact.email or "")
        if converted is None:
            raise refused
        return converted

    def _converted_lead(self, email: str) -> WriteResult | None:
        """The converted lead of an email, found through the global search (the only
        listing that still shows it: a handful of matches per kind), with the account the
        conversion made (named after the lead, carrying its email) when search shows it."""
        hits = self.http.get("/api/search/", params={"q": email}).get("results") or []
        account = next((h["title"] for h in hits if h.get("type") == "account"
                        and (h.get("subtitle") or "").lower() == email.lower()), None)
        for hit in (h for h in hits if h.get("type") == "lead"):
            lead = self.http.get(f"/api/leads/{hit['id']}/", allow_404=True) or {}
            row = lead.get("lead_obj") or {}
            if row.get("status") == "converted" and (row.get("email") or "").lower() == email.lower():
                return WriteResult(str(row["id"]), created=False,
                                   detail=_converted_note(row, account))
        return None

    def _find_lead(self, contact: CanonicalContact, key: str) -> tuple[str, bool] | None:
        """``(id, ours)``: by email when the contact has one (the server filters on it and
        it is unique), else by name and our marker. Open and closed leads both count."""
        params = {"email": contact.email} if contact.email else {
            "name": contact.last_name or contact.first_name or ""}
        body = self.http.get("/api/leads/", params={**params, "limit": 100})
        leads = [*(body.get("open_leads") or {}).get("open_leads", []),
                 *(body.get("close_leads") or {}).get("close_leads", [])]
        for lead in leads:
            if marker(key) in (lead.get("description") or ""):
                return str(lead["id"]), True
        if contact.email:
            for lead in leads:
                if (lead.get("email") or "").lower() == contact.email.lower():
                    return str(lead["id"]), False
        return None

    def create_activity(self, contact_ref: str, spec: ActivitySpec,
                        idempotency_key: str) -> WriteResult:
        found = self._find_task(contact_ref, spec.subject, idempotency_key)
        if found:
            return WriteResult(found, created=False)
        owner = self.resolve_owner(spec.owner)  # before the write: a bad owner writes nothing
        note = f"{KIND_NOTE[spec.kind]} at {spec.due_at.isoformat()}\n\n" if spec.kind in KIND_NOTE else ""
        self.http.post("/api/tasks/", json={
            "title": spec.subject, "status": "New", "priority": "Medium",
            "due_date": spec.due_at.date().isoformat(), "contacts": [contact_ref],
            "description": with_marker(note + spec.description, idempotency_key),
            "assigned_to": [owner] if owner else [], "teams": []})
        return self._found_after_create(self._find_task(contact_ref, spec.subject, idempotency_key))

    def _find_task(self, contact_ref: str, title: str, key: str) -> str | None:
        """The contact's detail lists its tasks with their notes: one read finds ours, however
        many tasks of the same title the organisation has."""
        body = self._contact_detail(contact_ref)
        if body is None:
            raise FatalConnectorError(f"bottlecrm: contact {contact_ref} does not exist", status=404)
        for task in body.get("tasks") or []:
            if task.get("title") == title and marker(key) in (task.get("description") or ""):
                return str(task["id"])
        return None

    def update_fields(self, contact_ref: str, values: dict[str, Any],
                      idempotency_key: str) -> WriteResult:
        """Only keys the server writes: it answers 200 to any other and changes nothing."""
        unknown = sorted(set(values) - WRITABLE - {"owner"})
        if unknown:
            raise FatalConnectorError(
                f"bottlecrm: contacts have no field {', '.join(map(repr, unknown))}; BottleCRM "
                f"can write {', '.join(sorted(WRITABLE | {'owner'}))}", status=400)
        body = {k: v for k, v in values.items() if k != "owner"}
        if "owner" in values:
            owner = self.resolve_owner(values["owner"])
            body["assigned_to"] = [owner] if owner else []
        self.http.patch(f"/api/contacts/{contact_ref}/", json=body)
        return WriteResult(contact_ref, created=False, detail=f"updated {sorted(values)}")

    def resolve_owner(self, owner: str | None) -> str | None:
        """A profile id from what a journey names: an email (as people know their
        colleagues) or a profile id. The server drops an assignee that is not an active
        profile of the organisation and still answers 200, so an unknown owner is refused
        here, before anything is written (a retry would otherwise find an unassigned task)."""
        if not owner:
            return None
        key = owner.strip().lower()
        now = self.clock.now()
        if (key not in self._owners or self._owners_at is None
                or now - self._owners_at > OWNERS_FRESH):  # someone new, or stale: read again
            people = self.list_owners()
            self._owners = {o.id.lower(): o.id for o in people}
            self._owners.update({o.email.lower(): o.id for o in people if o.email})
            self._owners_at = now
        if key not in self._owners:
            raise FatalConnectorError(f"bottlecrm: no active user {owner} in this organisation; "
                                      "pick an owner from its active users", status=400)
        return self._owners[key]

    def list_owners(self) -> list[Owner]:
        """The organisation's active profiles (``/api/users/``, ADMIN tokens only): work is
        assigned to a profile id, people know each other by name and email."""
        return [Owner(str(p["id"]), _person_name(p), _person_email(p))
                for p in self.http.paginate(Call("GET", "/api/users/"), USERS, page_size=100)
                if p.get("is_active", True)]

    def _retag(self, contact_ref: str, tag: str, present: bool) -> WriteResult:
        # Contact tags are readable; writing them is beyond the published description (no
        # "tags" in CreateContactRequest), which the server accepts.
        tag_id = self._tag_id(tag) or (self._create_tag(tag) if present else None)
        body = self._contact_detail(contact_ref)
        if body is None:
            raise FatalConnectorError(f"bottlecrm: contact {contact_ref} does not exist", status=404)
        tags = [_ref(t) for t in body["contact_obj"].get("tags") or []]
        if tag_id is None or (tag_id in tags) == present:
            return WriteResult(contact_ref, created=False, detail="unchanged")
        tags = [*tags, tag_id] if present else [t for t in tags if t != tag_id]
        self.http.patch(f"/api/contacts/{contact_ref}/", json={"tags": tags})
        return WriteResult(contact_ref, created=False, detail="changed")

    def _tag_rows(self, refresh: list[str] | None = None) -> list[dict[str, Any]]:
        """Active tags, read once and again when a contact carries one not known yet."""
        if self._tags is None or (refresh and set(refresh) - {t["id"] for t in self._tags}):
            self._tags = [{"id": str(t["id"]), "name": t["name"], "slug": t.get("slug")
                           or slug(t["name"])} for t in self.http.get("/api/tags/")["tags"]]
        return self._tags

    def _tag_id(self, name: str) -> str | None:
        wanted = slug(name)
        return next((t["id"] for t in self._tag_rows() if t["slug"] == wanted), None)

    def _create_tag(self, name: str) -> str:
        self._tags = None  # a concurrent creator may have won: re-read next time
        try:
            body = self.http.post("/api/tags/", json={"name": name})
        except FatalConnectorError as exc:
            if exc.status == 400 and (found := self._tag_id(name)):
                return found  # created meanwhile (same slug): use it
            raise
        return str(body["tag"]["id"])

    @staticmethod
    def _found_after_create(found: str | None) -> WriteResult:
        if found is None:  # created but not listed yet: the retry will find it
            raise RetriableConnectorError("bottlecrm: created record not found by its marker yet")
        return WriteResult(found, created=True)

    def picker_values(self, picker: str) -> list[str]:
        if picker == "tags":
            return sorted(t["name"] for t in self._tag_rows())
        if picker == "owners":
            return sorted(o.email for o in self.list_owners() if o.email)
        return []


def _ref(item: Any) -> str:
    """An id whether the server nested the object (tags, profiles) or gave the id."""
    return str(item["id"]) if isinstance(item, dict) else str(item)


def _person_email(profile: dict[str, Any]) -> str | None:
    return (profile.get("user_details") or {}).get("email") or None


def _person_name(profile: dict[str, Any]) -> str:
    """The user's name; BottleCRM fills it from the email's local part when none was given."""
    details = profile.get("user_details") or {}
    return str(details.get("name") or details.get("email") or profile["id"])


def _converted_note(lead: dict[str, Any], account: str | None) -> str:
    """What the timeline says of a lead BottleCRM had already converted. The host keeps no
    conversion date: the lead's last change is when it was converted or later."""
    into = f" to account {account!r}" if account else ""
    when = (lead.get("updated_at") or "")[:10]
    return (f"lead {lead.get('title') or lead['id']!r} was already converted{into}"
            f"{f' by {when}' if when else ''}; not created again (BottleCRM keeps one lead "
            f"per email, converted ones included)")


def _gone(external_id: str, stamp: str | None = None) -> CanonicalContact:
    return CanonicalContact(external_id=external_id, deleted=True, modified_at=parse_time(stamp),
                            version=f"deleted:{external_id}:{stamp or ''}")


def _at(entry: dict[str, Any]) -> datetime:
    """A feed entry's time; an entry without one sorts as the oldest possible."""
    return parse_time(entry.get("timestamp")) or datetime.min.replace(tzinfo=UTC)


def _previous_entries(feed: list[dict[str, Any]]) -> dict[str, datetime]:
    """Each entry's predecessor about the same contact: entry id -> that one's time."""
    last: dict[str, datetime] = {}
    before: dict[str, datetime] = {}
    for entry in sorted(feed, key=_at):
        if entry["entity_id"] in last:
            before[entry["id"]] = last[entry["entity_id"]]
        last[entry["entity_id"]] = _at(entry)
    return before


def _delivered(state: SyncState, entry: dict[str, Any], previous: datetime | None) -> bool:
    """Whether a version at least as new as this feed entry already went out (the scan or
    an earlier poll delivered it), so the contact need not be fetched again.

    The entry is stamped a moment after the save it records (``SAME_SAVE`` allows for
    that), and each save comes after the previous save's entry: so the version we hold
    is this entry's save only if it is also newer than the contact's previous entry. An
    edit made within a second of the last one is therefore never taken for it."""
    known = state.seen.get(entry["entity_id"])
    if not known or entry["action"] == "DELETE":
        return False
    if previous is not None and known[1] <= previous.timestamp():
        return False
    return bool(known[1] >= (_at(entry) - SAME_SAVE).timestamp())

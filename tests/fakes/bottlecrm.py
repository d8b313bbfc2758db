"""A stateful fake of BottleCRM (Django-CRM) that follows the real server (backend commit
d3eb5f9), not only its ``openapi.yaml``: ``tests/test_bottlecrm_parity.py`` sends the
connector's own requests to both and fails when status codes or body shapes differ.

Contacts, leads, tasks and tags behind a bearer personal access token; ``offset``/``limit``
listings (``contact_obj_list``, ``open_leads`` + ``close_leads``, ``tasks``); lead and task
creates that answer ``{"error": false, "message": ...}`` and no id. Where the server differs
from the description, the fake does what the server does (``leads/views/lead_views.py``,
``contacts/views.py``, ``common/views/*`` at that commit):

- the activity feed is an envelope ``{"error", "count", "activities"}`` (newest first, at
  most 50); its ``user.id`` is the editor's User id, ``null`` once the profile is gone;
- ``/api/profile/`` names the token's profile id, role and User id; ``/api/users/`` lists
  the organisation's profiles for admins only (403 "Permission Denied" for a USER), active
  and deactivated ones in separate halves (``common/views/user_views.py``);
- an assignee that is no profile of the organisation is dropped without a word (and, for
  tasks, one that is deactivated too): the write still answers 200;
- the lead list ignores ``?title=`` and filters ``?email=`` / ``?name=`` (contains); one
  lead per email (case-insensitive) per organisation; leads have a ``status``;
- a converted lead (``convert_lead``: an account named after the lead, with its email)
  leaves the lead list but keeps its email taken; only ``/api/search/?q=`` (a handful of
  matches per kind, converted leads included) and the lead's detail still show it;
- ``PATCH /api/contacts/{id}/`` answers 200 to keys it does not know and writes nothing;
- a contact's detail lists its tasks with their descriptions;
- tags are unique by Django's slug of the name ("VIP" and "vip" collide);
- a token that matches nothing answers 403 "Organization context is required";
  an unknown path answers Django's HTML 404 page.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import datetime, timedelta
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from tests.fakes.base import FakeCrm, HostError, json_response
from tests.fakes.spec import SpecChecker

ORG = {"id": "5d4c4a1e-1111-4c1c-9c1c-000000000001", "name": "Acme"}
INTEGRATION_USER = {"id": "9a0b0c0d-2222-4e2e-8e2e-000000000007",
                    "email": "journeys@acme.example", "name": "journeys", "profile_pic": None}
HUMAN_USER = {"id": "9a0b0c0d-2222-4e2e-8e2e-000000000002", "email": "sam@acme.example",
              "name": "sam", "profile_pic": None}
SALES_USER = {"id": "9a0b0c0d-2222-4e2e-8e2e-000000000003", "email": "sam@sales.example",
              "name": "Sam Seller", "profile_pic": None}
GONE_USER = {"id": "9a0b0c0d-2222-4e2e-8e2e-000000000004", "email": "gone@sales.example",
             "name": "Gus Gone", "profile_pic": None}
PROFILES = {  # profile id -> (User, role); the feed shows the User, assignments the profile
    "7c7c7c7c-3333-4f3f-9f3f-000000000007": (INTEGRATION_USER, "ADMIN"),
    "7c7c7c7c-3333-4f3f-9f3f-000000000002": (HUMAN_USER, "USER"),
    "7c7c7c7c-3333-4f3f-9f3f-000000000003": (SALES_USER, "USER"),
    "7c7c7c7c-3333-4f3f-9f3f-000000000004": (GONE_USER, "USER"),
}
INTEGRATION_PROFILE = "7c7c7c7c-3333-4f3f-9f3f-000000000007"
HUMAN_PROFILE = "7c7c7c7c-3333-4f3f-9f3f-000000000002"
SALES_PROFILE = "7c7c7c7c-3333-4f3f-9f3f-000000000003"  # an active salesperson
GONE_PROFILE = "7c7c7c7c-3333-4f3f-9f3f-000000000004"  # deactivated (left the company)
CONTACT_FIELDS = {"first_name", "last_name", "email", "phone", "organization", "title",
                  "department", "do_not_call", "description", "is_active", "country",
                  "linkedin_url", "address_line", "city", "state", "postcode"}
FEED_MAX = 50
# LeadSerializer's fields the fake keeps no value for (the connector reads none of them).
LEAD_EXTRA = ("salutation", "phone", "job_title", "website", "linkedin_url", "industry",
              "rating", "currency", "probability", "close_date", "address_line", "city",
              "state", "postcode", "country", "last_contacted", "next_follow_up",
              "company_name", "stage", "kanban_order")
NOT_FOUND_PAGE = ("<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Not Found</title>\n"
                  "</head>\n<body>\n  <h1>Not Found</h1><p>The requested resource was not "
                  "found on this server.</p>\n</body>\n</html>\n")


def django_slug(name: str) -> str:
    """Django's ``slugify`` (what the server keys tags on)."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text.lower())
    return re.sub(r"[-\s]+", "-", text).strip("-_")


def drf_time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class FakeBottleCrm(FakeCrm):
    name = "bottlecrm"
    token = "bcrm_pat_4f9d0c2b7a1e6f3d8c5b2a9e0d7c4b1a"

    def __init__(self, clock: Any = None):
        super().__init__(clock)
        self.spec = SpecChecker("bottlecrm/openapi.yaml")
        self.contacts: dict[str, dict[str, Any]] = {}
        self.leads: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.tags: dict[str, dict[str, Any]] = {}
        self.accounts: dict[str, dict[str, Any]] = {}
        self.activities: list[dict[str, Any]] = []
        self.member_token = "bcrm_pat_member0c2b7a1e6f3d8c5b2a9e0d7c4b1a"
        self.as_member = False
        self.roles = {pid: role for pid, (_, role) in PROFILES.items()}
        self.inactive = {GONE_PROFILE}

    def rules(self) -> list[Rule]:
        return [
            Rule("/api/contacts/", endpoint=self.list_contacts, methods=["GET"]),
            Rule("/api/contacts/<cid>/", endpoint=self.get_contact, methods=["GET"]),
            Rule("/api/contacts/<cid>/", endpoint=self.patch_contact, methods=["PATCH"]),
            Rule("/api/leads/", endpoint=self.list_leads, methods=["GET"]),
            Rule("/api/leads/", endpoint=self.create_lead, methods=["POST"]),
            Rule("/api/leads/<lid>/", endpoint=self.get_lead, methods=["GET"]),
            Rule("/api/search/", endpoint=self.search, methods=["GET"]),
            Rule("/api/tasks/", endpoint=self.list_tasks, methods=["GET"]),
            Rule("/api/tasks/", endpoint=self.create_task, methods=["POST"]),
            Rule("/api/tasks/<tid>/", endpoint=self.get_task, methods=["GET"]),
            Rule("/api/tags/", endpoint=self.list_tags, methods=["GET"]),
            Rule("/api/tags/", endpoint=self.create_tag, methods=["POST"]),
            Rule("/api/activities/", endpoint=self.feed, methods=["GET"]),
            Rule("/api/profile/", endpoint=self.profile, methods=["GET"]),
            Rule("/api/users/", endpoint=self.list_users, methods=["GET"]),
        ]

    def authorized(self, request: Request) -> bool:
        return request.headers.get("Authorization") in (f"Bearer {self.token}",
                                                        f"Bearer {self.member_token}")

    def _handle(self, request: Request) -> Response:
        if not self.authorized(request):  # the middleware finds no org for the token
            return json_response({"detail": "Organization context is required. Please "
                                            "login again."}, 403)
        self.as_member = request.headers.get("Authorization") == f"Bearer {self.member_token}"
        response = super()._handle(request)
        if response.status_code == 404 and b"no route" in response.get_data():
            return Response(NOT_FOUND_PAGE, 404, content_type="text/html")
        return response

    def validate_response(self, request: Request, response: Response) -> None:
        """Not against ``openapi.yaml``: where the two differ the server is the truth
        (the feed envelope, profile shapes), and the parity test holds the fake to it."""

    # --- BottleCRM's answers --------------------------------------------------------
    def render_error(self, error: HostError) -> Response:
        if error.status == 400 and "errors" in error.extra:
            return json_response({"error": True, "errors": error.extra["errors"]}, 400)
        if error.status == 403 and not error.code:  # the views' own refusals
            return json_response({"error": True, "errors": error.message}, 403)
        return json_response({"detail": error.message}, error.status,
                             error.extra.get("headers"))

    def budget_response(self) -> Response:
        return json_response({"detail": "Request was throttled. Expected available in "
                                        "86400 seconds."}, 429, {"Retry-After": "86400"})

    def _record(self, action: str, entity_type: str, entity_id: str, name: str,
                user: dict[str, Any] | None, at: datetime | None = None) -> None:
        at = at or self.now()
        self.activities.append({
            "id": str(uuid.uuid4()), "user": user, "action": action,
            "action_display": action.capitalize(), "entity_type": entity_type,
            "entity_id": entity_id, "entity_name": name, "description": "",
            "timestamp": drf_time(at), "humanized_time": "just now", "_at": at})

    def _contact_out(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {**dict.fromkeys(CONTACT_FIELDS), "created_by": INTEGRATION_USER["id"],
               "account": None, "custom_fields": {},
               **{k: v for k, v in row.items() if not k.startswith("_")}}
        for name in ("email", "phone", "country"):  # nullable + oneOf: OpenAPI 3.0 rejects null
            out[name] = out.get(name) or ""
        out.update(created_at=drf_time(row["_created"]), updated_at=drf_time(row["_updated"]),
                   org=ORG, assigned_to=[self._profile_out(p) for p in row.get("assigned_to", [])],
                   teams=[], account_detail=self._account_ref(row.get("account")),
                   linked_accounts=[self._account_ref(a) for a in row.get("_accounts", [])])
        return out

    def _account_ref(self, account_id: str | None) -> dict[str, Any] | None:
        return {"id": account_id, "name": self.accounts[account_id]["name"]} if account_id else None

    def _profile_out(self, profile_id: str) -> dict[str, Any]:
        user, _ = PROFILES[profile_id]
        return {"id": profile_id, "role": self.roles[profile_id],
                "is_active": profile_id not in self.inactive, "address": None,
                "has_marketing_access": False, "has_sales_access": False, "phone": None,
                "date_of_joining": None, "created_at": "2026-01-05T09:00:00Z",
                "user_details": {**{k: user[k] for k in ("id", "email", "name", "profile_pic")},
                                 "is_active": True, "last_login": None}}

    def _caller(self) -> str:
        """The profile the request's token belongs to."""
        return HUMAN_PROFILE if self.as_member else INTEGRATION_PROFILE

    def _live_contact(self, cid: str) -> dict[str, Any]:
        row = self.contacts.get(cid)
        if row is None:
            raise HostError(404, "No Contact matches the given query.")
        return row

    def _write_contact(self, row: dict[str, Any] | None, values: dict[str, Any],
                       user: dict[str, Any] | None, at: datetime | None = None) -> dict[str, Any]:
        """As ``CreateContactSerializer`` (partial): known fields validated and written,
        ``tags`` / ``assigned_to`` replaced by the ids that exist, anything else ignored."""
        if values.get("email") and "@" not in values["email"]:
            raise HostError(400, "invalid", errors={"email": ["Enter a valid email address."]})
        written = {k: v for k, v in values.items() if k in CONTACT_FIELDS}
        if "tags" in values:
            written["tags"] = [t for t in values["tags"] or [] if t in self.tags]
        if "assigned_to" in values:
            written["assigned_to"] = [p for p in values["assigned_to"] or [] if p in PROFILES]
        at = at or self.now()
        if row is None:
            row = {"id": str(uuid.uuid4()), "tags": [], "description": None, "phone": None,
                   "is_active": True, "do_not_call": False, "assigned_to": [], "_created": at}
            self.contacts[row["id"]] = row
            action = "CREATE"
        else:
            action = "UPDATE"
        row.update(written)
        row["_updated"] = at
        self._record(action, "Contact", row["id"], f"{row['first_name']} {row['last_name']}",
                     user, at)
        return row

    # --- endpoints ------------------------------------------------------------------
    @staticmethod
    def _window(request: Request, default: int = 10) -> tuple[int, int]:
        return int(request.args.get("offset", 0)), int(request.args.get("limit", default))

    def list_contacts(self, request: Request) -> Response:
        offset, limit = self._window(request)
        rows = sorted(self.contacts.values(), key=lambda r: (r["_created"], r["id"]))
        chunk = [self._contact_out(r) for r in rows[offset:offset + limit]]
        nxt = offset + limit if offset + limit < len(rows) else None
        return json_response({"active_count": sum(1 for r in rows if r["is_active"]),
                              "inactive_count": sum(1 for r in rows if not r["is_active"]),
                              "countries": [], "users": [],
                              "count": len(rows), "results": chunk, "per_page": limit,
                              "page_number": offset // max(limit, 1) + 1,
                              "contacts_count": len(rows), "offset": nxt,
                              "contact_obj_list": chunk})

    def get_contact(self, request: Request, cid: str) -> Response:
        row = self._live_contact(cid)
        tasks = [self._task_out(t, True) for t in self.tasks.values() if cid in t["_contacts"]]
        address = {k: row.get(k) for k in ("address_line", "city", "state", "postcode", "country")}
        return json_response({"contact_obj": self._contact_out(row), "address_obj": address,
                              "comments": [], "attachments": [], "assigned_data": [],
                              "tasks": tasks, "users_mention": [],
                              "opportunities": row.get("_deals", []),
                              "cases": [], "colleagues": [], "countries": [],
                              "custom_field_definitions": []})

    def patch_contact(self, request: Request, cid: str) -> Response:
        user = HUMAN_USER if self.as_member else INTEGRATION_USER
        self._write_contact(self._live_contact(cid), self.body(request), user)
        return json_response({"error": False, "message": "Contact Updated Successfully"})

    def _lead_out(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {**dict.fromkeys(LEAD_EXTRA), **{k: v for k, v in row.items() if not k.startswith("_")}}
        out.update(contacts=[self._contact_out(self.contacts[c]) for c in row["_contacts"]
                             if c in self.contacts],
                   assigned_to=[self._profile_out(p) for p in row.get("_assigned", [])],
                   teams=[], tags=[],
                   is_sample=False,
                   custom_fields={}, is_active=True,
                   created_at=drf_time(row["_created"]),
                   updated_at=drf_time(row.get("_updated", row["_created"])))
        out["created_by"] = {k: INTEGRATION_USER[k] for k in ("id", "email", "name")}
        return out

    def list_leads(self, request: Request) -> Response:
        """``?title=`` is not a filter here (ignored, as on the server); ``?email=`` and
        ``?name=`` are (contains, case-insensitive). Closed leads come in their own half."""
        offset, limit = self._window(request)
        email, name = request.args.get("email", "").lower(), request.args.get("name", "").lower()
        rows = [r for r in sorted(self.leads.values(), key=lambda r: (r["_created"], r["id"]),
                                  reverse=True)
                if r["status"] != "converted" and email in (r.get("email") or "").lower()
                and (not name or name in f"{r.get('first_name')} {r.get('last_name')}".lower())]
        halves = {}
        for half, keep in (("open_leads", lambda r: r["status"] != "closed"),
                           ("close_leads", lambda r: r["status"] == "closed")):
            part = [r for r in rows if keep(r)]
            chunk = part[offset:offset + limit]
            nxt = offset + len(chunk) if chunk and offset + len(chunk) < len(part) else (
                None if chunk else 0)
            halves[half] = {"leads_count": len(part), half: [self._lead_out(r) for r in chunk],
                            "offset": nxt}
        return json_response({"per_page": 10, "page_number": offset // 10 + 1, **halves,
                              "totals": {"count": len(rows), "unworked_over_a_week": 0},
                              "contacts": [], "status": [], "source": [],
                              "tags": [], "users": [], "countries": [], "industries": []})

    def create_lead(self, request: Request) -> Response:
        body = self.body(request)
        email = (body.get("email") or "").lower()
        if email and any((r.get("email") or "").lower() == email for r in self.leads.values()):
            raise HostError(400, "invalid", errors={"email": [
                "Another lead in this organisation already uses that email address."]})
        row = {k: body.get(k) for k in ("title", "first_name", "last_name", "email",
                                        "description", "source", "opportunity_amount")}
        row.update(id=str(uuid.uuid4()), _contacts=[c for c in body.get("contacts", [])
                                                    if c in self.contacts],
                   _created=self.now(), status=body.get("status"),
                   _assigned=[p for p in body.get("assigned_to") or [] if p in PROFILES])
        self.leads[row["id"]] = row
        return json_response({"error": False, "message": "Lead Created Successfully"})

    def get_lead(self, request: Request, lid: str) -> Response:
        row = self.leads.get(lid)
        if row is None:
            raise HostError(404, "No Lead matches the given query.")
        return json_response({"lead_obj": self._lead_out(row), "attachments": [],
                              "comments": [], "users_mention": [], "assigned_data": [],
                              "users": [], "teams": [], "source": [], "status": [],
                              "countries": [], "custom_field_definitions": [],
                              "users_excluding_team": [self._profile_out(p) for p in PROFILES
                                                       if p not in self.inactive]})

    def search(self, request: Request) -> Response:
        """``/api/search/?q=``: at most six matches per kind, leads first (converted ones
        too), then accounts and contacts; each ``{type, id, title, subtitle}``."""
        q = (request.args.get("q") or "").strip()
        if len(q) < 2:
            return json_response({"query": q, "results": []})
        low = q.lower()

        def hit(kind: str, row: dict[str, Any], title: str, subtitle: str) -> dict[str, Any]:
            return {"type": kind, "id": row["id"], "title": title, "subtitle": subtitle}

        leads = [hit("lead", r, r.get("title") or "", r.get("email") or "")
                 for r in self.leads.values()
                 if any(low in (r.get(k) or "").lower()
                        for k in ("title", "first_name", "last_name", "email"))]
        accounts = [hit("account", r, r["name"], r.get("email") or "")
                    for r in self.accounts.values()
                    if low in r["name"].lower() or low in (r.get("email") or "").lower()]
        contacts = [hit("contact", r, f"{r['first_name']} {r['last_name']}".strip(),
                        r.get("organization") or r.get("email") or "")
                    for r in self.contacts.values()
                    if any(low in (r.get(k) or "").lower()
                           for k in ("first_name", "last_name", "email", "organization"))]
        return json_response({"query": q,
                              "results": [*leads[:6], *accounts[:6], *contacts[:6]]})

    def _task_out(self, row: dict[str, Any], detail: bool) -> dict[str, Any]:
        out = {k: row[k] for k in ("id", "title", "status", "priority", "due_date")}
        out.update(account=None, opportunity=None, case=None, lead=None, tags=[],
                   assigned_to=[self._profile_out(p) for p in row.get("_assigned", [])],
                   created_at=drf_time(row["_created"]))
        if detail:
            out.update(description=row.get("description"), teams=[], custom_fields={},
                       created_by={k: INTEGRATION_USER[k]
                                   for k in ("id", "email", "name", "profile_pic")},
                       contacts=[self._contact_out(self.contacts[c]) for c in row["_contacts"]
                                 if c in self.contacts])
        return out

    def list_tasks(self, request: Request) -> Response:
        offset, limit = self._window(request)
        title = request.args.get("title")
        rows = [r for r in sorted(self.tasks.values(), key=lambda r: (r["_created"], r["id"]))
                if title is None or title.lower() in r["title"].lower()]
        return json_response({"tasks_count": len(rows),
                              "offset": offset + limit if offset + limit < len(rows) else None,
                              "tasks": [self._task_out(r, False) for r in rows[offset:offset + limit]],
                              "totals": {}, "status": [], "priority": [], "users": [],
                              "accounts_list": [], "contacts_list": []})

    def create_task(self, request: Request) -> Response:
        body = self.body(request)
        row = {k: body.get(k) for k in ("title", "status", "priority", "due_date", "description")}
        row.update(id=str(uuid.uuid4()), _contacts=list(body.get("contacts", [])),
                   _created=self.now(),
                   _assigned=[p for p in body.get("assigned_to") or []
                              if p in PROFILES and p not in self.inactive])
        self.tasks[row["id"]] = row
        return json_response({"error": False, "message": "Task Created Successfully"})

    def get_task(self, request: Request, tid: str) -> Response:
        row = self.tasks.get(tid)
        if row is None:
            raise HostError(404, "No Task matches the given query.")
        return json_response({"task_obj": self._task_out(row, True), "attachments": [],
                              "comments": [], "users_mention": [], "assigned_data": {},
                              "users": [], "users_excluding_team": [], "teams": []})

    def _tag_out(self, row: dict[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in row.items() if not k.startswith("_")},
                "created_at": drf_time(row["_created"])}

    def list_tags(self, request: Request) -> Response:
        tags = [self._tag_out(t) for t in self.tags.values()]
        return json_response({"tags_count": len(tags), "tags": tags,
                              "totals": {"count": len(tags), "active": len(tags), "unused": 0}})

    def create_tag(self, request: Request) -> Response:
        body = self.body(request)
        if self.roles[self._caller()] != "ADMIN":
            raise HostError(403, "Only admins can create tags")
        return json_response({"error": False, "message": "Tag Created Successfully",
                              "tag": self._tag_out(self._new_tag(body["name"]))}, 201)

    def _new_tag(self, name: str) -> dict[str, Any]:
        if any(t["slug"] == django_slug(name) for t in self.tags.values()):
            raise HostError(400, "invalid", errors={"name": ["A tag with this name already exists."]})
        row = {"id": str(uuid.uuid4()), "name": name, "slug": django_slug(name),
               "color": "blue", "description": "", "is_active": True, "_created": self.now()}
        self.tags[row["id"]] = row
        return row

    def feed(self, request: Request) -> Response:
        limit = min(int(request.args.get("limit", 10)), FEED_MAX)
        kind = request.args.get("entity_type")
        rows = [a for a in self.activities if kind is None or a["entity_type"] == kind]
        rows = sorted(rows, key=lambda a: a["_at"], reverse=True)[:limit]
        out = [{k: v for k, v in a.items() if not k.startswith("_")} for a in rows]
        return json_response({"error": False, "count": len(out), "activities": out})

    def profile(self, request: Request) -> Response:
        return json_response({"user_obj": {**self._profile_out(self._caller()), "teams": []}})

    def list_users(self, request: Request) -> Response:
        """Admins only; ``?email=`` contains, case-insensitive; each half paged by
        ``offset`` / ``limit`` (DRF's LimitOffsetPagination), newest profile id first."""
        if self.roles[self._caller()] != "ADMIN":
            raise HostError(403, "Permission Denied")
        email = request.args.get("email", "").lower()
        offset, limit = self._window(request)
        rows = sorted((p for p, (u, _) in PROFILES.items() if email in u["email"]), reverse=True)
        halves = {}
        for half, keep in (("active_users", lambda p: p not in self.inactive),
                           ("inactive_users", lambda p: p in self.inactive)):
            part = [p for p in rows if keep(p)]
            chunk = part[offset:offset + limit]
            nxt = (offset + len(chunk) if offset + len(chunk) < len(part) else None) if chunk else 0
            halves[half] = {f"{half}_count": len(part), "offset": nxt,
                            half: [{**self._profile_out(p), "active_token_count": 1}
                                   for p in chunk]}
        return json_response({**halves, "admin_email": "admin@localhost",
                              "roles": [["ADMIN", "ADMIN"], ["USER", "USER"]],
                              "status": [["True", "Active"], ["False", "In Active"]]})

    # --- the contract's view of the host -------------------------------------------
    def add_contact(self, *, email: str, first_name: str, last_name: str, tags: Any = ()) -> str:
        with self.lock:
            ids = [next((t["id"] for t in self.tags.values() if t["name"] == name), None)
                   or self._new_tag(name)["id"] for name in tags]
            row = self._write_contact(None, {"email": email, "first_name": first_name,
                                             "last_name": last_name, "tags": ids}, HUMAN_USER)
            self.advance(0.001)
            return row["id"]

    def change_contact(self, external_id: str, *, by_integration: bool = False,
                       backdate: float = 0.0, **fields: Any) -> None:
        with self.lock:
            self._write_contact(self.contacts[external_id], fields,
                                INTEGRATION_USER if by_integration else HUMAN_USER,
                                self.now() - timedelta(seconds=backdate))
            self.advance(0.001)

    def add_lead(self, contact_id: str, *, title: str, status: str = "assigned") -> str:
        """A lead made by a person in BottleCRM's own screens."""
        with self.lock:
            contact = self.contacts[contact_id]
            row = {"id": str(uuid.uuid4()), "title": title, "first_name": contact["first_name"],
                   "last_name": contact["last_name"], "email": (contact.get("email") or "").upper(),
                   "description": None, "source": "call", "opportunity_amount": None,
                   "status": status, "_contacts": [], "_created": self.now(), "_assigned": []}
            self.leads[row["id"]] = row
            return str(row["id"])

    def convert_lead(self, lead_id: str) -> str:
        """The lead board's "Convert": an account named after the lead, carrying its email,
        the contact of that email linked to it with a deal, and the lead's status
        "converted" for good. Answers the account's id."""
        with self.lock:
            lead = self.leads[lead_id]
            name = f"{lead.get('first_name')} {lead.get('last_name')}"
            account = {"id": str(uuid.uuid4()), "email": lead.get("email"), "name": name}
            self.accounts[account["id"]] = account
            email = (lead.get("email") or "").lower()
            for contact in self.contacts.values():
                if email and (contact.get("email") or "").lower() == email:
                    contact["account"] = contact.get("account") or account["id"]
                    contact.setdefault("_accounts", []).append(account["id"])
                    contact.setdefault("_deals", []).append({
                        "id": str(uuid.uuid4()), "name": name, "stage": "QUALIFICATION",
                        "amount": lead.get("opportunity_amount"), "closed_on": None})
            lead.update(status="converted", _updated=self.now())
            self.advance(0.001)
            return account["id"]

    def deactivate_contact(self, external_id: str) -> None:
        with self.lock:
            self._write_contact(self.contacts[external_id], {"is_active": False}, HUMAN_USER)
            self.advance(0.001)

    def forbid_owner_listing(self) -> None:
        """The integration profile is demoted to USER: only admins list the team."""
        self.roles[INTEGRATION_PROFILE] = "USER"

    def assign_contact(self, external_id: str, profile_id: str) -> None:
        """A salesperson made the contact's owner in BottleCRM's own screens."""
        with self.lock:
            self._write_contact(self.contacts[external_id], {"assigned_to": [profile_id]},
                                HUMAN_USER)
            self.advance(0.001)

    def forget_editors(self) -> None:
        """Every feed entry's editor deleted: the server then shows ``"user": null``."""
        for entry in self.activities:
            entry["user"] = None

    def delete_contact(self, external_id: str) -> None:
        with self.lock:
            row = self.contacts.pop(external_id)
            self._record("DELETE", "Contact", external_id, row["first_name"], HUMAN_USER)
            self.advance(0.001)

    def written(self, kind: str, key: str) -> list[dict[str, Any]]:
        table = self.leads if kind == "lead" else self.tasks
        return [{"id": r["id"], "contact": r["_contacts"][0] if r["_contacts"] else None,
                 "subject": r.get("title"), "row": r}
                for r in table.values() if key in (r.get("description") or "")]

    def contact_tags(self, external_id: str) -> set[str]:
        return {self.tags[t]["name"] for t in self.contacts[external_id]["tags"]}

    def contact_value(self, external_id: str, field: str) -> Any:
        return self.contacts[external_id].get(field)

    def rate_limit_next(self, retry_after: int) -> None:
        self.inject(429, {"detail": f"Request was throttled. Expected available in "
                                    f"{retry_after} seconds."},
                    headers={"Retry-After": str(retry_after)})

    def exhaust_daily_budget(self) -> None:
        self.daily_limit = self.daily_used.get(self.now().date().isoformat(), 0)

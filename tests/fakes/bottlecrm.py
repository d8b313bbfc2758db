"""A stateful fake of BottleCRM (Django-CRM), checked against its published ``openapi.yaml``.

Contacts, leads, tasks and tags behind a bearer personal access token; ``offset``/``limit``
listings shaped as the description says (``contact_obj_list``, ``open_leads``, ``tasks``);
creates that answer ``{"error": false, "message": ...}`` and no id; the activity feed
(newest first, at most 50, no "since"); DRF-style validation errors and throttling.
"""

from __future__ import annotations

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
CONTACT_FIELDS = {"first_name", "last_name", "email", "phone", "organization", "title",
                  "department", "do_not_call", "description", "is_active", "tags", "country"}
FEED_MAX = 50


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
        self.activities: list[dict[str, Any]] = []

    def rules(self) -> list[Rule]:
        return [
            Rule("/api/contacts/", endpoint=self.list_contacts, methods=["GET"]),
            Rule("/api/contacts/<cid>/", endpoint=self.get_contact, methods=["GET"]),
            Rule("/api/contacts/<cid>/", endpoint=self.patch_contact, methods=["PATCH"]),
            Rule("/api/leads/", endpoint=self.list_leads, methods=["GET"]),
            Rule("/api/leads/", endpoint=self.create_lead, methods=["POST"]),
            Rule("/api/tasks/", endpoint=self.list_tasks, methods=["GET"]),
            Rule("/api/tasks/", endpoint=self.create_task, methods=["POST"]),
            Rule("/api/tasks/<tid>/", endpoint=self.get_task, methods=["GET"]),
            Rule("/api/tags/", endpoint=self.list_tags, methods=["GET"]),
            Rule("/api/tags/", endpoint=self.create_tag, methods=["POST"]),
            Rule("/api/activities/", endpoint=self.feed, methods=["GET"]),
        ]

    # --- BottleCRM's answers --------------------------------------------------------
    def render_error(self, error: HostError) -> Response:
        if error.status == 400 and "errors" in error.extra:
            return json_response({"error": True, "errors": error.extra["errors"]}, 400)
        return json_response({"detail": error.message}, error.status,
                             error.extra.get("headers"))

    def budget_response(self) -> Response:
        return json_response({"detail": "Request was throttled. Expected available in "
                                        "86400 seconds."}, 429, {"Retry-After": "86400"})

    def _record(self, action: str, entity_type: str, entity_id: str, name: str,
                user: dict[str, Any], at: datetime | None = None) -> None:
        at = at or self.now()
        self.activities.append({
            "id": str(uuid.uuid4()), "user": user, "action": action,
            "action_display": action.capitalize(), "entity_type": entity_type,
            "entity_id": entity_id, "entity_name": name, "description": "",
            "timestamp": drf_time(at), "humanized_time": "just now", "_at": at})

    def _contact_out(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in row.items() if not k.startswith("_")}
        for name in ("email", "phone", "country"):  # nullable + oneOf: OpenAPI 3.0 rejects null
            out[name] = out.get(name) or ""
        out.update(created_at=drf_time(row["_created"]), updated_at=drf_time(row["_updated"]),
                   org=ORG, assigned_to=[], teams=[], account_detail={}, linked_accounts=[],
                   contact_attachment=[])
        return out

    def _live_contact(self, cid: str) -> dict[str, Any]:
        row = self.contacts.get(cid)
        if row is None:
            raise HostError(404, "No Contact matches the given query.")
        return row

    def _write_contact(self, row: dict[str, Any] | None, values: dict[str, Any],
                       user: dict[str, Any], at: datetime | None = None) -> dict[str, Any]:
        errors = {}
        if values.get("email") and "@" not in values["email"]:
            errors["email"] = ["Enter a valid email address."]
        for name in values:
            if name not in CONTACT_FIELDS:
                errors[name] = ["Unknown field."]
        for tag in values.get("tags", []):
            if tag not in self.tags:
                errors["tags"] = [f'Invalid pk "{tag}" - object does not exist.']
        if errors:
            raise HostError(400, "invalid", errors=errors)
        at = at or self.now()
        if row is None:
            row = {"id": str(uuid.uuid4()), "tags": [], "description": None, "phone": None,
                   "is_active": True, "do_not_call": False, "_created": at}
            self.contacts[row["id"]] = row
            action = "CREATE"
        else:
            action = "UPDATE"
        row.update(values)
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
        return json_response({"count": len(rows), "results": chunk, "per_page": limit,
                              "page_number": offset // max(limit, 1) + 1,
                              "contacts_count": len(rows), "offset": nxt,
                              "contact_obj_list": chunk})

    def get_contact(self, request: Request, cid: str) -> Response:
        row = self._live_contact(cid)
        return json_response({"contact_obj": self._contact_out(row), "address_obj": {},
                              "comments": [], "attachments": [], "assigned_data": [],
                              "tasks": [], "users_mention": []})

    def patch_contact(self, request: Request, cid: str) -> Response:
        self._write_contact(self._live_contact(cid), self.body(request), INTEGRATION_USER)
        return json_response({"error": False, "message": "Contact Updated Successfully"})

    def _lead_out(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in row.items() if not k.startswith("_")}
        out.update(contacts=[self._contact_out(self.contacts[c]) for c in row["_contacts"]
                             if c in self.contacts],
                   assigned_to=[], teams=[], tags=[], lead_attachment=[], lead_comments=[],
                   is_sample=False,
                   created_at=drf_time(row["_created"]), updated_at=drf_time(row["_created"]))
        out["created_by"] = {k: INTEGRATION_USER[k] for k in ("id", "email", "name")}
        return out

    def list_leads(self, request: Request) -> Response:
        offset, limit = self._window(request)
        title = request.args.get("title")
        rows = [r for r in sorted(self.leads.values(), key=lambda r: (r["_created"], r["id"]))
                if title is None or title.lower() in (r.get("title") or "").lower()]
        chunk = rows[offset:offset + limit]
        nxt = offset + limit if offset + limit < len(rows) else None
        return json_response({
            "per_page": limit, "page_number": offset // max(limit, 1) + 1,
            "open_leads": {"leads_count": len(rows), "open_leads": [self._lead_out(r) for r in chunk],
                           "offset": nxt},
            "close_leads": {"leads_count": 0, "close_leads": [], "offset": None},
            "contacts": [], "status": [], "source": [], "tags": [], "users": [],
            "countries": [], "industries": []})

    def create_lead(self, request: Request) -> Response:
        body = self.body(request)
        for cid in body.get("contacts", []):
            if cid not in self.contacts:
                raise HostError(400, "invalid", errors={"contacts": [f"Invalid pk \"{cid}\""]})
        row = {k: body.get(k) for k in ("title", "first_name", "last_name", "email",
                                        "description", "source", "opportunity_amount")}
        row.update(id=str(uuid.uuid4()), _contacts=list(body.get("contacts", [])),
                   _created=self.now(), status=body.get("status") or "assigned")
        self.leads[row["id"]] = row
        return json_response({"error": False, "message": "Lead Created Successfully"})

    def _task_out(self, row: dict[str, Any], detail: bool) -> dict[str, Any]:
        out = {k: row[k] for k in ("id", "title", "status", "priority", "due_date")}
        out.update(account="", opportunity="", case="", lead="", assigned_to=[], tags=[],
                   created_at=drf_time(row["_created"]))
        if detail:
            out.update(description=row.get("description"), teams=[], task_attachment=[],
                       task_comments=[],
                       created_by={k: INTEGRATION_USER[k] for k in ("id", "email", "name")},
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
                   _created=self.now())
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
        return json_response({"tags_count": len(tags), "tags": tags, "totals": {}})

    def create_tag(self, request: Request) -> Response:
        body = self.body(request)
        return json_response({"error": False, "message": "Tag created",
                              "tag": self._tag_out(self._new_tag(body["name"]))})

    def _new_tag(self, name: str) -> dict[str, Any]:
        if any(t["name"].lower() == name.lower() for t in self.tags.values()):
            raise HostError(400, "invalid", errors={"name": ["Tag with this name already exists."]})
        row = {"id": str(uuid.uuid4()), "name": name, "slug": name.lower().replace(" ", "-"),
               "color": "blue", "description": "", "is_active": True, "_created": self.now()}
        self.tags[row["id"]] = row
        return row

    def feed(self, request: Request) -> Response:
        limit = min(int(request.args.get("limit", 10)), FEED_MAX)
        kind = request.args.get("entity_type")
        rows = [a for a in self.activities if kind is None or a["entity_type"] == kind]
        rows = sorted(rows, key=lambda a: a["_at"], reverse=True)[:limit]
        return json_response([{k: v for k, v in a.items() if not k.startswith("_")} for a in rows])

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

"""A stateful fake of the Dataverse (Dynamics 365) Web API v9.2, OData v4.

Contacts, leads and activities (tasks, phone calls, appointments, emails) with GUID keys;
``Prefer: odata.maxpagesize`` paging through ``@odata.nextLink``; change tracking
(``Prefer: odata.track-changes``, ``@odata.deltaLink``, ``$deletedEntity`` rows) on
row versions; upsert on the alternate key ``crmj_journeyskey`` with ``If-None-Match: *``
(412 when the key exists); ``@odata.bind`` for owner, parent contact and "regarding";
the ``SendEmail`` action; Dataverse's error body; service-protection 429s with
``Retry-After``; webhooks carrying a ``RemoteExecutionContext`` and a shared secret.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

import requests
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from tests.fakes.base import FakeCrm, HostError, json_response

API = "/api/data/v9.2"
INTEGRATION_USER = "8d7b1a52-0000-4000-8000-00000000a001"
HUMAN_USER = "8d7b1a52-0000-4000-8000-00000000b002"
WEBHOOK_SECRET = "dyn-shared-secret-5e2a"
KEY = "crmj_journeyskey"
TAGS = "crmj_tags"
ACTIVITIES = {"tasks": "task", "phonecalls": "phonecall", "appointments": "appointment",
              "emails": "email"}
COLUMNS = {
    "contacts": {"firstname", "lastname", "emailaddress1", "telephone1", "birthdate", "donotbulkemail", TAGS},
    "leads": {"subject", "firstname", "lastname", "emailaddress1", "description",
              "estimatedamount", "leadsourcecode", KEY},
    "tasks": {"subject", "description", "scheduledend", KEY},
    "phonecalls": {"subject", "description", "scheduledend", "phonenumber", "directioncode", KEY},
    "appointments": {"subject", "description", "scheduledstart", "scheduledend", KEY},
    "emails": {"subject", "description", "directioncode", KEY, "email_activity_parties"},
}
BINDS = {"ownerid": "systemusers", "parentcontactid": "contacts"} | {
    f"regardingobjectid_contact_{logical}": "contacts" for logical in ACTIVITIES.values()}
REQUIRED = {"leads": {"subject", "lastname"}, "contacts": {"lastname"}}
CANONICAL = {"email": "emailaddress1", "first_name": "firstname", "last_name": "lastname",
             "phone": "telephone1"}
_RESOURCE = re.compile(r"^(\w+)(?:\((.*?)\))?(?:/(.+))?$")


def odata_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeDynamics(FakeCrm):
    name = "dynamics"
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.fake-dataverse-token"

    def __init__(self, clock: Any = None):
        super().__init__(clock)
        self.rows: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in COLUMNS}
        self.version = 1000
        self.order = 0

    def rules(self) -> list[Rule]:
        return [Rule(f"{API}/<path:resource>", endpoint=self.dispatch,
                     methods=["GET", "POST", "PATCH", "DELETE"])]

    # --- Dataverse's answers --------------------------------------------------------
    def render_error(self, error: HostError) -> Response:
        return json_response({"error": {"code": error.code or "0x80040203",
                                         "message": error.message}}, error.status,
                             error.extra.get("headers"))

    def budget_response(self) -> Response:
        return self.render_error(HostError(
            429, "Combined execution time of incoming requests exceeded the limit of "
                 "1,200,000 milliseconds over time window of 300 seconds.", "0x80072321",
            headers={"Retry-After": "300"}))

    def _key(self, entity_set: str, key: str | None) -> dict[str, Any] | None:
        if key is None:
            return None
        if "=" in key:
            name, _, value = key.partition("=")
            value = unquote(value).strip("'").replace("''", "'")
            if name != KEY or entity_set == "contacts":
                raise HostError(400, f"'{name}' is not a valid alternate key", "0x80060888")
            return next((r for r in self.rows[entity_set].values()
                         if r.get(KEY) == value and not r["_deleted"]), {"_missing": value})
        row = self.rows[entity_set].get(key)
        return row if row and not row["_deleted"] else {"_missing": key}

    def _select(self, entity_set: str, row: dict[str, Any], select: str | None) -> dict:
        names = select.split(",") if select else [
            k for k in row if not k.startswith("_") or k.endswith("_value")]
        out = {"@odata.etag": f'W/"{row["versionnumber"]}"'}
        for name in names:
            if name in row:
                value = row[name]
                out[name] = odata_time(value) if isinstance(value, datetime) else value
        return out

    def _write(self, entity_set: str, body: dict[str, Any], row: dict[str, Any] | None,
               user: str = INTEGRATION_USER) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, value in body.items():
            if name.endswith("@odata.bind"):
                nav = name[: -len("@odata.bind")]
                target = BINDS.get(nav)
                match = re.fullmatch(r"/?(\w+)\(([-0-9a-f]{36})\)", str(value))
                if target is None or (entity_set == "contacts" and nav != "ownerid"):
                    raise HostError(400, f"An undeclared property '{nav}' which only has "
                                         "property annotations in the payload", "0x80060888")
                if not match or match.group(1) != target:
                    raise HostError(400, f"bad @odata.bind value {value!r}", "0x80060888")
                if target == "contacts" and match.group(2) not in self.rows["contacts"]:
                    raise HostError(404, f"contact With Id = {match.group(2)} Does Not Exist",
                                    "0x80040217")
                column = "_regardingobjectid_value" if nav.startswith("regarding") else f"_{nav}_value"
                values[column] = match.group(2)
            elif name not in COLUMNS[entity_set]:
                raise HostError(400, f"The property '{name}' does not exist on type "
                                     f"'Microsoft.Dynamics.CRM.{entity_set[:-1]}'", "0x80060888")
            else:
                values[name] = value
        if row is None:
            missing = sorted(REQUIRED.get(entity_set, set()) - set(values))
            if missing:
                raise HostError(400, f"Attribute {missing[0]} cannot be empty", "0x80040203")
            self.order += 1
            row = {"_order": self.order, "_deleted": False, "createdon": self.now(),
                   "statecode": 0, "_ownerid_value": user}
            row[_primary(entity_set)] = str(uuid.uuid4())
            self.rows[entity_set][row[_primary(entity_set)]] = row
        row.update(values)
        self.version += 1
        row.update(modifiedon=self.now(), versionnumber=self.version, _modifiedby_value=user)
        return row

    # --- the one endpoint: OData resource paths -------------------------------------
    def dispatch(self, request: Request, resource: str) -> Response:
        match = _RESOURCE.match(resource)
        if not match or match.group(1) not in self.rows:
            if resource.startswith("EntityDefinitions"):
                return self.entity_keys(resource)
            raise HostError(404, f"Resource not found for the segment '{resource}'", "0x8006088a")
        entity_set, key, action = match.groups()
        row = self._key(entity_set, key)
        if action == "Microsoft.Dynamics.CRM.SendEmail" and request.method == "POST":
            return self.send_email(row)
        if request.method == "GET":
            return self.read(request, entity_set, row) if key else self.listing(request, entity_set)
        if request.method == "PATCH" and row is not None:
            return self.upsert(request, entity_set, row)
        if request.method == "DELETE" and row is not None:
            if "_missing" in row:
                raise HostError(404, "Does Not Exist", "0x80040217")
            self._write(entity_set, {}, row)
            row["_deleted"] = True
            return Response(status=204)
        raise HostError(405, "method not allowed here", "0x80060888")

    def read(self, request: Request, entity_set: str, row: dict[str, Any]) -> Response:
        if "_missing" in row:
            raise HostError(404, f"{entity_set[:-1]} With Id = {row['_missing']} Does Not Exist",
                            "0x80040217")
        return json_response(self._select(entity_set, row, request.args.get("$select")))

    def upsert(self, request: Request, entity_set: str, row: dict[str, Any]) -> Response:
        exists = "_missing" not in row
        if request.headers.get("If-None-Match") == "*" and exists:
            raise HostError(412, "A record with matching key values already exists.",
                            "0x80060892")
        if request.headers.get("If-Match") == "*" and not exists:
            raise HostError(404, f"{entity_set[:-1]} With Id = {row['_missing']} Does Not Exist",
                            "0x80040217")
        body = self.body(request)
        if not exists and "=" not in request.path.rsplit("(", 1)[-1]:
            raise HostError(400, "creating by primary key is not what this fake supports")
        if not exists:
            body = {**body, KEY: row["_missing"]}
        saved = self._write(entity_set, body, row if exists else None)
        if "return=representation" in request.headers.get("Prefer", ""):
            return json_response(self._select(entity_set, saved, request.args.get("$select")),
                                 200 if exists else 201)
        return Response(status=204)

    def listing(self, request: Request, entity_set: str) -> Response:
        prefer = request.headers.get("Prefer", "")
        size = int(m.group(1)) if (m := re.search(r"odata\.maxpagesize=(\d+)", prefer)) else 5000
        select = request.args.get("$select")
        delta = request.args.get("$deltatoken")
        skip, _, snapshot = request.args.get("$skiptoken", "0:").partition(":")
        snap = int(snapshot) if snapshot else self.version
        if delta is None:
            rows = sorted((r for r in self.rows[entity_set].values() if not r["_deleted"]),
                          key=lambda r: r["_order"])
            items = [self._select(entity_set, r, select) for r in rows]
        else:
            since = int(delta)
            rows = sorted((r for r in self.rows[entity_set].values()
                           if since < r["versionnumber"] <= snap), key=lambda r: r["versionnumber"])
            items = [{"@odata.context": f"{self.url}{API}/$metadata#{entity_set}/$deletedEntity",
                      "id": r[_primary(entity_set)], "reason": "deleted"} if r["_deleted"]
                     else self._select(entity_set, r, select) for r in rows]
        start = int(skip)
        body: dict[str, Any] = {"@odata.context": f"{self.url}{API}/$metadata#{entity_set}",
                                "value": items[start:start + size]}
        base = f"{self.url}{API}/{entity_set}?$select={select or ''}"
        if start + size < len(items):
            token = f"&$deltatoken={delta}" if delta is not None else ""
            body["@odata.nextLink"] = f"{base}{token}&$skiptoken={start + size}:{snap}"
        elif "odata.track-changes" in prefer or delta is not None:
            body["@odata.deltaLink"] = f"{base}&$deltatoken={snap}"
        return json_response(body, headers={"Preference-Applied": prefer} if prefer else None)

    def send_email(self, row: dict[str, Any] | None) -> Response:
        if row is None or "_missing" in row:
            raise HostError(404, "email Does Not Exist", "0x80040217")
        if row["statecode"] != 0:
            raise HostError(400, "This email has already been sent", "0x8004f50c")
        row.update(statecode=1, statuscode=3, _sent=True)
        return json_response({"@odata.context": f"{self.url}{API}/$metadata#Microsoft.Dynamics."
                                                "CRM.SendEmailResponse", "Subject": row["subject"]})

    def entity_keys(self, resource: str) -> Response:
        logical = re.search(r"LogicalName='(\w+)'", resource)
        keys = [] if not logical or logical.group(1) == "contact" else [
            {"LogicalName": "crmj_journeyskey_key", "KeyAttributes": [KEY]}]
        return json_response({"value": keys})

    # --- the contract's view of the host -------------------------------------------
    def add_contact(self, *, email: str, first_name: str, last_name: str, tags: Any = ()) -> str:
        with self.lock:
            values = {"emailaddress1": email, "firstname": first_name, "lastname": last_name}
            if tags:
                values[TAGS] = ";".join(tags)
            return self._write("contacts", values, None, user=HUMAN_USER)["contactid"]

    def change_contact(self, external_id: str, *, by_integration: bool = False,
                       backdate: float = 0.0, **fields: Any) -> None:
        with self.lock:
            row = self.rows["contacts"][external_id]
            self._write("contacts", {CANONICAL[k]: v for k, v in fields.items()}, row,
                        user=INTEGRATION_USER if by_integration else HUMAN_USER)
            row["modifiedon"] -= timedelta(seconds=backdate)

    def delete_contact(self, external_id: str) -> None:
        with self.lock:
            row = self.rows["contacts"][external_id]
            self._write("contacts", {}, row, user=HUMAN_USER)
            row["_deleted"] = True

    def written(self, kind: str, key: str) -> list[dict[str, Any]]:
        entity_set = {"lead": "leads", "task": "tasks", "phone_call": "phonecalls",
                      "appointment": "appointments", "email": "emails"}[kind]
        return [{"id": r[_primary(entity_set)], "subject": r.get("subject"), "row": r,
                 "contact": r.get("_parentcontactid_value") or r.get("_regardingobjectid_value")}
                for r in self.rows[entity_set].values() if r.get(KEY) == key and not r["_deleted"]]

    def contact_tags(self, external_id: str) -> set[str]:
        raw = self.rows["contacts"][external_id].get(TAGS) or ""
        return {t for t in raw.split(";") if t}

    def contact_value(self, external_id: str, field: str) -> Any:
        return self.rows["contacts"][external_id].get(CANONICAL[field])

    def rate_limit_next(self, retry_after: int) -> None:
        self.inject(429, {"error": {"code": "0x80072322", "message": "Number of requests "
                                    "exceeded the limit of 6000 over time window of 300 seconds."}},
                    headers={"Retry-After": str(retry_after)})

    def exhaust_daily_budget(self) -> None:
        self.daily_limit = self.daily_used.get(self.now().date().isoformat(), 0)

    def emit_webhook(self, url: str, external_id: str, *, forged: bool = False,
                     age: float = 0.0, by_integration: bool = False) -> requests.Response:
        at = self.now() - timedelta(seconds=age)
        user = INTEGRATION_USER if by_integration else HUMAN_USER
        context = {
            "BusinessUnitId": str(uuid.uuid4()), "CorrelationId": str(uuid.uuid4()), "Depth": 1,
            "InitiatingUserId": user, "UserId": user, "MessageName": "Update", "Mode": 1,
            "OperationCreatedOn": f"/Date({int(at.timestamp() * 1000)})/",
            "OperationId": str(uuid.uuid4()), "OrganizationId": str(uuid.uuid4()),
            "OrganizationName": "contoso", "PrimaryEntityId": external_id,
            "PrimaryEntityName": "contact", "RequestId": str(uuid.uuid4()), "Stage": 40,
            "InputParameters": [{"key": "Target", "value": {
                "Id": external_id, "LogicalName": "contact",
                "Attributes": [{"key": "firstname", "value": "Ada"}]}}],
        }
        headers = {"Content-Type": "application/json",
                   "x-ms-dynamics-organization": "contoso.crm.dynamics.com",
                   "x-ms-dynamics-entity-name": "contact", "x-ms-dynamics-request-name": "Update",
                   "x-crmj-secret": "guessed-secret" if forged else WEBHOOK_SECRET}
        return requests.post(url, data=json.dumps(context), headers=headers, timeout=5)


def _primary(entity_set: str) -> str:
    return {"contacts": "contactid", "leads": "leadid"}.get(entity_set, "activityid")

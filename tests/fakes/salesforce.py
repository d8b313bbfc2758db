"""A stateful fake of the Salesforce REST API (v60.0): sObjects, SOQL, upsert, composite.

Contacts, Leads, Tasks and Events with 18-character ids; a small SOQL interpreter (field
lists, WHERE with AND/OR/parentheses, ORDER BY, LIMIT; ``queryAll`` sees deleted rows);
upsert on the External ID field ``CRM_Journeys_Key__c``; composite requests with
``@{ref.Field}`` references; Salesforce's error lists; ``Sforce-Limit-Info`` on every
answer and ``REQUEST_LIMIT_EXCEEDED`` once the daily allowance is spent.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from werkzeug.routing import Rule
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from tests.fakes.base import FakeCrm, HostError, json_response

API = "/services/data/v60.0"
INTEGRATION_USER = "005000000000001AAA"
HUMAN_USER = "005000000000002AAA"
KEY = "CRM_Journeys_Key__c"
TAGS = "CRM_Journeys_Tags__c"
PREFIX = {"Contact": "003", "Lead": "00Q", "Task": "00T", "Event": "00U"}
SYSTEM = {"Id", "CreatedDate", "LastModifiedDate", "SystemModstamp", "LastModifiedById",
          "CreatedById", "IsDeleted"}
FIELDS = {
    "Contact": {"FirstName", "LastName", "Email", "Phone", "OwnerId", "Birthdate", "HasOptedOutOfEmail", TAGS},
    "Lead": {"FirstName", "LastName", "Email", "Company", "Description", "LeadSource",
             "OwnerId", "Status", KEY, "CRM_Journeys_Contact__c"},
    "Task": {"WhoId", "Subject", "ActivityDate", "OwnerId", "Description", "Status",
             "Priority", "TaskSubtype", KEY},
    "Event": {"WhoId", "Subject", "StartDateTime", "EndDateTime", "DurationInMinutes",
              "OwnerId", "Description", KEY},
}
REQUIRED = {"Contact": {"LastName"}, "Lead": {"LastName", "Company"}, "Task": set(),
            "Event": {"StartDateTime"}}
CANONICAL = {"email": "Email", "first_name": "FirstName", "last_name": "LastName",
             "phone": "Phone"}


def sf_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


class FakeSalesforce(FakeCrm):
    name = "salesforce"
    token = "00D000000000001!AQ0AQFakeSessionToken"
    daily_allowance = 15000

    def __init__(self, clock: Any = None):
        super().__init__(clock)
        self.rows: dict[str, dict[str, dict[str, Any]]] = {o: {} for o in FIELDS}

    def rules(self) -> list[Rule]:
        return [
            Rule(f"{API}/query", endpoint=self.query, methods=["GET"]),
            Rule(f"{API}/queryAll", endpoint=self.query_all, methods=["GET"]),
            Rule(f"{API}/composite", endpoint=self.composite, methods=["POST"]),
            Rule(f"{API}/sobjects/<obj>/describe", endpoint=self.describe, methods=["GET"]),
            Rule(f"{API}/sobjects/<obj>", endpoint=self.create, methods=["POST"]),
            Rule(f"{API}/sobjects/<obj>/<rid>", endpoint=self.read, methods=["GET"]),
            Rule(f"{API}/sobjects/<obj>/<rid>", endpoint=self.update, methods=["PATCH"]),
            Rule(f"{API}/sobjects/<obj>/<rid>", endpoint=self.delete, methods=["DELETE"]),
            Rule(f"{API}/sobjects/<obj>/<field>/<value>", endpoint=self.read_by_key,
                 methods=["GET"]),
            Rule(f"{API}/sobjects/<obj>/<field>/<value>", endpoint=self.upsert,
                 methods=["PATCH"]),
        ]

    # --- Salesforce's answers -------------------------------------------------------
    def render_error(self, error: HostError) -> Response:
        body = [{"message": error.message, "errorCode": error.code or "BAD_REQUEST",
                 **({"fields": error.extra["fields"]} if "fields" in error.extra else {})}]
        return json_response(body, error.status)

    def budget_response(self) -> Response:
        return json_response([{"message": "TotalRequests Limit exceeded.",
                               "errorCode": "REQUEST_LIMIT_EXCEEDED"}], 403)

    def _handle(self, request: Request) -> Response:
        response = super()._handle(request)
        used = self.daily_used.get(self.now().date().isoformat(), 0)
        response.headers["Sforce-Limit-Info"] = f"api-usage={used}/{self.daily_allowance}"
        return response

    def _obj(self, obj: str) -> str:
        if obj not in FIELDS:
            raise HostError(404, f"The requested resource does not exist: {obj}", "NOT_FOUND")
        return obj

    def _row(self, obj: str, rid: str) -> dict[str, Any]:
        row = self.rows[self._obj(obj)].get(rid)
        if row is None or row["IsDeleted"]:
            raise HostError(404, "The requested resource does not exist", "NOT_FOUND")
        return row

    def _out(self, obj: str, row: dict[str, Any], fields: list[str] | None = None) -> dict:
        names = fields or ["Id", *sorted(SYSTEM - {"Id"}), *sorted(FIELDS[obj])]
        out: dict[str, Any] = {"attributes": {"type": obj,
                                              "url": f"{API}/sobjects/{obj}/{row['Id']}"}}
        for name in names:
            value = row.get(name)
            out[name] = sf_time(value) if isinstance(value, datetime) else value
        return out

    def _write(self, obj: str, values: dict[str, Any], row: dict[str, Any] | None = None,
               user: str = INTEGRATION_USER, stamp: datetime | None = None) -> dict[str, Any]:
        unknown = sorted(set(values) - FIELDS[obj])
        if unknown:
            raise HostError(400, f"No such column '{unknown[0]}' on sobject of type {obj}",
                            "INVALID_FIELD")
        email = values.get("Email")
        if email and "@" not in email:
            raise HostError(400, f"Email: invalid email address: {email}",
                            "INVALID_EMAIL_ADDRESS", fields=["Email"])
        if row is None:
            missing = sorted(f for f in REQUIRED[obj] if not values.get(f))
            if missing:
                raise HostError(400, f"Required fields are missing: {missing}",
                                "REQUIRED_FIELD_MISSING", fields=missing)
            if "TaskSubtype" in values and values["TaskSubtype"] not in ("Task", "Call", "Email"):
                raise HostError(400, "bad value for restricted picklist field: TaskSubtype",
                                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
        elif "TaskSubtype" in values:
            raise HostError(400, "Unable to create/update fields: TaskSubtype.",
                            "INVALID_FIELD_FOR_INSERT_UPDATE", fields=["TaskSubtype"])
        now = stamp or self.now().replace(microsecond=0)
        if row is None:
            rid = f"{PREFIX[obj]}{self.next_id():012d}AAA"
            row = {"Id": rid, "CreatedDate": now, "CreatedById": user, "IsDeleted": False}
            self.rows[obj][rid] = row
        row.update(values)
        row.update(LastModifiedDate=now, SystemModstamp=now, LastModifiedById=user)
        return row

    # --- endpoints ------------------------------------------------------------------
    def describe(self, request: Request, obj: str) -> Response:
        obj = self._obj(obj)
        fields = [{"name": f, "externalId": f == KEY, "unique": f == KEY}
                  for f in sorted(SYSTEM | FIELDS[obj])]
        return json_response({"name": obj, "fields": fields})

    def read(self, request: Request, obj: str, rid: str) -> Response:
        row = self._row(obj, rid)
        fields = request.args.get("fields")
        return json_response(self._out(obj, row, fields.split(",") if fields else None))

    def read_by_key(self, request: Request, obj: str, field: str, value: str) -> Response:
        matches = [r for r in self.rows[self._obj(obj)].values()
                   if r.get(field) == value and not r["IsDeleted"]]
        if not matches:
            raise HostError(404, "The requested resource does not exist", "NOT_FOUND")
        return json_response(self._out(obj, matches[0]))

    def create(self, request: Request, obj: str) -> Response:
        row = self._write(self._obj(obj), self.body(request))
        return json_response({"id": row["Id"], "success": True, "errors": []}, 201)

    def update(self, request: Request, obj: str, rid: str) -> Response:
        self._write(obj, self.body(request), self._row(obj, rid))
        return Response(status=204)

    def delete(self, request: Request, obj: str, rid: str) -> Response:
        row = self._row(obj, rid)
        self._write(obj, {}, row)
        row["IsDeleted"] = True
        return Response(status=204)

    def upsert(self, request: Request, obj: str, field: str, value: str) -> Response:
        obj = self._obj(obj)
        if field != KEY:
            raise HostError(400, f"Provided external ID field does not exist or is not "
                                 f"accessible: {field}", "NOT_FOUND")
        values = self.body(request)
        if field in values:
            raise HostError(400, f"{field} may not be set in the body of an upsert by it",
                            "INVALID_FIELD")
        existing = next((r for r in self.rows[obj].values()
                         if r.get(field) == value and not r["IsDeleted"]), None)
        row = self._write(obj, {**values, field: value}, existing)
        status = 200 if existing else 201
        return json_response({"id": row["Id"], "success": True, "errors": [],
                              "created": existing is None}, status)

    def query(self, request: Request, include_deleted: bool = False) -> Response:
        soql = Soql(request.args["q"])
        rows = [r for r in self.rows[self._obj(soql.obj)].values()
                if (include_deleted or not r["IsDeleted"]) and soql.matches(r)]
        rows = soql.order(rows)
        if soql.limit is not None:
            rows = rows[:soql.limit]
        return json_response({"totalSize": len(rows), "done": True,
                              "records": [self._out(soql.obj, r, soql.fields) for r in rows]})

    def query_all(self, request: Request) -> Response:
        return self.query(request, include_deleted=True)

    def composite(self, request: Request) -> Response:
        body = self.body(request)
        results: list[dict[str, Any]] = []
        by_ref: dict[str, Any] = {}
        failed = False
        for sub in body["compositeRequest"]:
            if failed and body.get("allOrNone"):
                results.append({"body": [{"errorCode": "PROCESSING_HALTED",
                                          "message": "The transaction was rolled back"}],
                                "httpHeaders": {}, "httpStatusCode": 400,
                                "referenceId": sub["referenceId"]})
                continue
            url = _resolve(sub["url"], by_ref)
            payload = _resolve(json.dumps(sub.get("body")), by_ref, quote=True)
            path, _, query = url.partition("?")
            environ = EnvironBuilder(method=sub["method"], path=path, query_string=query,
                                     data=payload if sub.get("body") is not None else None,
                                     content_type="application/json").get_environ()
            inner = Request(environ)
            try:
                # Salesforce decodes a sub-request URL as it decodes any path
                endpoint, args = self.url_map.bind("127.0.0.1").match(unquote(path), sub["method"])
                answer = endpoint(inner, **args)
            except HostError as error:
                answer = self.render_error(error)
            data = json.loads(answer.get_data() or b"null")
            failed = failed or answer.status_code >= 400
            by_ref[sub["referenceId"]] = data
            results.append({"body": data, "httpHeaders": {}, "httpStatusCode": answer.status_code,
                            "referenceId": sub["referenceId"]})
        return json_response({"compositeResponse": results})

    # --- the contract's view of the host -------------------------------------------
    def add_contact(self, *, email: str, first_name: str, last_name: str, tags: Any = ()) -> str:
        with self.lock:
            values = {"Email": email, "FirstName": first_name, "LastName": last_name}
            if tags:
                values[TAGS] = ";".join(tags)
            return self._write("Contact", values, user=HUMAN_USER)["Id"]

    def change_contact(self, external_id: str, *, by_integration: bool = False,
                       backdate: float = 0.0, **fields: Any) -> None:
        with self.lock:
            stamp = self.now().replace(microsecond=0) - timedelta(seconds=backdate)
            self._write("Contact", {CANONICAL[k]: v for k, v in fields.items()},
                        self.rows["Contact"][external_id],
                        user=INTEGRATION_USER if by_integration else HUMAN_USER, stamp=stamp)

    def delete_contact(self, external_id: str) -> None:
        with self.lock:
            row = self.rows["Contact"][external_id]
            self._write("Contact", {}, row, user=HUMAN_USER)
            row["IsDeleted"] = True

    def written(self, kind: str, key: str) -> list[dict[str, Any]]:
        obj, subtype = {"lead": ("Lead", None), "task": ("Task", "Task"),
                        "phone_call": ("Task", "Call"), "email": ("Task", "Email"),
                        "appointment": ("Event", None)}[kind]
        out = []
        for row in self.rows[obj].values():
            if row.get(KEY) != key or (subtype and row.get("TaskSubtype") != subtype):
                continue
            contact = row.get("CRM_Journeys_Contact__c") if obj == "Lead" else row.get("WhoId")
            out.append({"id": row["Id"], "contact": contact, "subject": row.get("Subject"),
                        "row": row})
        return out

    def contact_tags(self, external_id: str) -> set[str]:
        raw = self.rows["Contact"][external_id].get(TAGS) or ""
        return {t for t in raw.split(";") if t}

    def contact_value(self, external_id: str, field: str) -> Any:
        return self.rows["Contact"][external_id].get(CANONICAL[field])

    def rate_limit_next(self, retry_after: int) -> None:
        self.inject(503, [{"errorCode": "SERVER_UNAVAILABLE",
                           "message": "Too many concurrent requests"}],
                    headers={"Retry-After": str(retry_after)})

    def exhaust_daily_budget(self) -> None:
        self.daily_limit = self.daily_used.get(self.now().date().isoformat(), 0)


def _resolve(text: str, refs: dict[str, Any], quote: bool = False) -> str:
    def value(match: re.Match[str]) -> str:
        ref, _, path = match.group(1).partition(".")
        found: Any = refs[ref]
        for step in re.findall(r"[^.\[\]]+", path):
            found = found[int(step)] if step.isdigit() else found[step]
        return json.dumps(found)[1:-1] if quote and isinstance(found, str) else str(found)

    return re.sub(r"@\{([^}]+)\}", value, text)


# --- a very small SOQL --------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:\\'|[^'])*')|(?P<dt>\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:?\d\d))"
                    r"|(?P<num>\d+(?:\.\d+)?)|(?P<op>>=|<=|!=|=|>|<|\(|\)|,)|(?P<word>[\w.]+))")


class Soql:
    """``SELECT f, ... FROM Obj [WHERE ...] [ORDER BY f [ASC|DESC], ...] [LIMIT n]``."""

    def __init__(self, text: str):
        self.tokens = [(m.lastgroup, m.group(m.lastgroup)) for m in _TOKEN.finditer(text)]
        self.pos = 0
        self.expect("SELECT")
        self.fields = [self.take()[1]]
        while self.peek() == ",":
            self.take()
            self.fields.append(self.take()[1])
        self.expect("FROM")
        self.obj = self.take()[1]
        self.where = self.expr() if self.accept("WHERE") else None
        self.order_by: list[tuple[str, bool]] = []
        if self.accept("ORDER"):
            self.expect("BY")
            while True:
                name = self.take()[1]
                desc = self.accept("DESC")
                self.accept("ASC")
                self.order_by.append((name, desc))
                if not self.accept(","):
                    break
        self.limit = int(self.take()[1]) if self.accept("LIMIT") else None
        if self.pos != len(self.tokens):
            raise HostError(400, f"unexpected token {self.tokens[self.pos][1]!r}", "MALFORMED_QUERY")

    def peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str | None, str]:
        if self.pos >= len(self.tokens):
            raise HostError(400, "unexpected end of query", "MALFORMED_QUERY")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def accept(self, word: str) -> bool:
        if (self.peek() or "").upper() == word:
            self.pos += 1
            return True
        return False

    def expect(self, word: str) -> None:
        if not self.accept(word):
            raise HostError(400, f"expected {word}", "MALFORMED_QUERY")

    def expr(self) -> Any:
        node = self.term()
        while self.accept("OR"):
            node = ("or", node, self.term())
        return node

    def term(self) -> Any:
        node = self.factor()
        while self.accept("AND"):
            node = ("and", node, self.factor())
        return node

    def factor(self) -> Any:
        if self.accept("("):
            node = self.expr()
            self.expect(")")
            return node
        name = self.take()[1]
        op = self.take()[1]
        kind, raw = self.take()
        value: Any = {"str": lambda: raw[1:-1].replace("\\'", "'"),
                      "dt": lambda: _parse_dt(raw), "num": lambda: float(raw)}.get(
            kind or "", lambda: {"true": True, "false": False, "null": None}[raw.lower()])()
        return ("cmp", name, op, value)

    def matches(self, row: dict[str, Any], node: Any = None) -> bool:
        node = node if node is not None else self.where
        if node is None:
            return True
        if node[0] in ("and", "or"):
            left, right = self.matches(row, node[1]), self.matches(row, node[2])
            return (left and right) if node[0] == "and" else (left or right)
        _, name, op, value = node
        actual = row.get(name)
        if op in ("=", "!="):
            return (actual == value) == (op == "=")
        if actual is None or value is None:
            return False
        return {">": actual > value, ">=": actual >= value, "<": actual < value,
                "<=": actual <= value}[op]

    def order(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for name, desc in reversed(self.order_by):
            rows = sorted(rows, key=lambda r, n=name: (r.get(n) is None, r.get(n)), reverse=desc)
        return rows


def _parse_dt(raw: str) -> datetime:
    text = raw.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", text):
        text = f"{text[:-2]}:{text[-2:]}"
    return datetime.fromisoformat(text).astimezone(UTC)

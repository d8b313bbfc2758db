"""A stateful fake of Odoo's external APIs: JSON-2 (19+) and JSON-RPC ``execute_kw`` (< 19).

Models ``res.partner`` (tags in ``category_id``), ``res.partner.category``, ``crm.lead``,
``mail.activity`` (+ types), ``calendar.event``, ``mail.message``, ``mail.blacklist`` and
``ir.model``, with
many2one/many2many semantics and commands, domains in Polish notation, ``order``,
``active_test``, ``write_date``/``write_uid`` stamped per writer (second precision, as in
Odoo), and Odoo's error shapes: JSON-2 answers errors with 4xx/5xx and a
``{"name", "message", ...}`` body; JSON-RPC answers 200 with an ``error`` member.

Documented behaviour this fake follows (checked only against the documentation and
Odoo's source, not a live database; docs/connectors.md lists the differences):

- Writing a field the model lacks raises ``ValueError: Invalid field 'x' on model 'y'``
  (``BaseModel._write``/``_create``); a missing record ``MissingError``; a refused key
  ``AccessDenied``; missing rights ``AccessError``. JSON-2 maps them to 4xx statuses,
  JSON-RPC to a 200 whose ``error.data.name`` is the exception class
  (https://www.odoo.com/documentation/19.0/developer/reference/external_api.html).
- Paging is ``limit``/``offset`` on ``search``/``search_read`` with an ``order``; no page
  cap (same page).
- Owners are ``res.users``: internal users have ``share`` false; archived users are left
  out unless ``active_test`` is off. A ``user_id`` naming no user breaks the foreign key,
  which Odoo reports as a ``ValidationError`` ("The operation cannot be completed: ...").
- ``mail.blacklist`` (addons/mail/models/mail_blacklist.py): ``email`` is stored and
  searched lower-cased; ``create`` of an address already there (archived or not) returns
  the existing row unchanged instead of tripping the ``unique (email)`` constraint, which
  only a ``write`` of an address onto another row reaches ("Email address already
  exists!", a ``ValidationError`` over RPC); an address that is not one is a ``UserError``.
  ``res.partner.is_blacklisted`` is computed (not stored): an active row for its email.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from tests.fakes.base import FakeCrm, HostError, json_response

DB = "acme"
INTEGRATION_UID = 7
LOGIN = "journeys@acme.example"
HUMAN_UID = 2
MANY2ONE = {"user_id", "write_uid", "create_uid", "partner_id", "res_model_id",
            "activity_type_id"}
MANY2MANY = {"category_id", "partner_ids"}
SCHEMA = {
    "res.partner": {"name", "email", "phone", "user_id", "tz", "lang", "category_id", "is_blacklisted",
                    "active", "is_company", "comment"},
    "res.partner.category": {"name"},
    "crm.lead": {"name", "partner_id", "user_id", "expected_revenue", "description", "type",
                 "email_from", "active"},
    "mail.activity": {"res_model_id", "res_model", "res_id", "activity_type_id", "summary",
                      "note", "date_deadline", "user_id"},
    "mail.activity.type": {"name", "category"},
    "calendar.event": {"name", "start", "stop", "partner_ids", "user_id", "description"},
    "mail.message": {"model", "res_id", "body", "subject", "message_type"},
    "ir.model": {"model", "name"},
    "mail.blacklist": {"email", "active"},
    "res.users": {"name", "login", "email", "share"},
}
REQUIRED = {"res.partner": {"name"}, "mail.blacklist": {"email"}, "crm.lead": {"name"}, "calendar.event": {"name", "start", "stop"},
            "mail.activity": {"res_model_id", "res_id", "date_deadline"}}
STATUS = {"odoo.exceptions.MissingError": 404, "odoo.exceptions.AccessError": 403,
          "odoo.exceptions.ValidationError": 422, "odoo.exceptions.UserError": 422,
          "builtins.ValueError": 422}


SALES_UID = 8
USERS = [  # (id, name, login, email, share (portal), active)
    (HUMAN_UID, "Mitchell Admin", "admin", "admin@acme.example", False, True),
    (INTEGRATION_UID, "Journeys Integration", LOGIN, LOGIN, False, True),
    (SALES_UID, "Sam Seller", "sam@sales.example", "sam@sales.example", False, True),
    (9, "Former Rep", "gone@sales.example", "gone@sales.example", False, False),
    (10, "Portal Customer", "customer@client.example", "customer@client.example", True, True),
]


def odoo_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


class OdooError(HostError):
    def __init__(self, name: str, message: str):
        super().__init__(STATUS.get(name, 500), message, name)


class FakeOdoo(FakeCrm):
    name = "odoo"
    token = "5f1c0a4e9d2b7c3a1e8f6d4b2a0c9e7f5d3b1a09"

    def __init__(self, clock: Any = None):
        super().__init__(clock)
        self.tables: dict[str, dict[int, dict[str, Any]]] = {m: {} for m in SCHEMA}
        self.uid = INTEGRATION_UID
        self.denied: set[str] = set()  # models the integration user's groups cannot read
        for model, values in [("res.users", {"name": "Mitchell Admin"}),
                              ("res.users", {"name": "Journeys Integration"}),
                              ("ir.model", {"model": "res.partner", "name": "Contact"}),
                              ("ir.model", {"model": "crm.lead", "name": "Lead"}),
                              ("mail.activity.type", {"name": "To-Do", "category": "default"}),
                              ("mail.activity.type", {"name": "Call", "category": "phonecall"}),
                              ("mail.activity.type", {"name": "Meeting", "category": "meeting"})]:
            self._create(model, values)
        self.tables["res.users"] = {
            uid: {"id": uid, "name": name, "login": login, "email": email, "share": share,
                  "active": active}
            for uid, name, login, email, share, active in USERS}

    def rules(self) -> list[Rule]:
        return [Rule("/json/2/<model>/<method>", endpoint=self.json2, methods=["POST"]),
                Rule("/jsonrpc", endpoint=self.jsonrpc, methods=["POST"])]

    def authorized(self, request: Request) -> bool:
        if request.path == "/jsonrpc":
            return True  # JSON-RPC carries its credentials inside the body
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and key == self.token

    def render_error(self, error: HostError) -> Response:
        name = error.code if "." in error.code else "werkzeug.exceptions.Unauthorized" \
            if error.status == 401 else "builtins.Exception"
        return json_response({"name": name, "message": error.message, "arguments": [error.message],
                              "context": {}, "debug": f"Traceback ...\n{name}: {error.message}"},
                             error.status, error.extra.get("headers"))

    def budget_response(self) -> Response:
        return json_response({"name": "werkzeug.exceptions.TooManyRequests",
                              "message": "Too many requests"}, 429, {"Retry-After": "3600"})

    # --- the two transports ---------------------------------------------------------
    def json2(self, request: Request, model: str, method: str) -> Response:
        kwargs = self.body(request)
        database = request.headers.get("X-Odoo-Database")
        if database not in (None, DB):
            raise HostError(404, f"database {database} not found", "werkzeug.exceptions.NotFound")
        return json_response(self.call(model, method, kwargs, self.uid))

    def jsonrpc(self, request: Request) -> Response:
        body = self.body(request)
        params = body.get("params", {})
        try:
            if params.get("service") == "common" and params.get("method") == "authenticate":
                db, _login, key, _env = params["args"]
                result: Any = INTEGRATION_UID if (db == DB and key == self.token) else False
            elif params.get("service") == "object" and params.get("method") == "execute_kw":
                db, uid, key, model, method, args, *rest = params["args"]
                if db != DB or uid != INTEGRATION_UID or key != self.token:
                    raise OdooError("odoo.exceptions.AccessDenied", "Access Denied")
                kwargs = dict(rest[0] if rest else {})
                if args:
                    kwargs["ids"] = args[0]
                result = self.call(model, method, kwargs, uid)
            else:
                raise OdooError("builtins.Exception", f"unknown service {params.get('service')}")
        except HostError as error:
            return json_response({"jsonrpc": "2.0", "id": body.get("id"), "error": {
                "code": 200, "message": "Odoo Server Error",
                "data": {"name": error.code, "message": error.message,
                         "arguments": [error.message], "context": {}, "debug": "Traceback"}}})
        return json_response({"jsonrpc": "2.0", "id": body.get("id"), "result": result})

    # --- the ORM --------------------------------------------------------------------
    def call(self, model: str, method: str, kwargs: dict[str, Any], uid: int) -> Any:
        if model not in self.tables:
            raise OdooError("builtins.KeyError", f"Model {model!r} does not exist")
        if model in self.denied:
            raise OdooError("odoo.exceptions.AccessError",
                            f"You are not allowed to access '{model}' records.\n\nThis "
                            "operation is allowed for the following groups:\n\t- "
                            "Role / Administrator")
        context = kwargs.get("context") or {}
        ids = kwargs.get("ids") or []
        if method == "search_read":
            rows = self._search(model, kwargs.get("domain", []), context, kwargs)
            return [self._read(model, r, kwargs.get("fields")) for r in rows]
        if method == "search":
            return [r["id"] for r in self._search(model, kwargs.get("domain", []), context, kwargs)]
        if method == "search_count":
            return len(self._search(model, kwargs.get("domain", []), context, {}))
        if method == "read":
            return [self._read(model, self._get(model, i), kwargs.get("fields")) for i in ids]
        if method == "create":
            if model == "mail.blacklist":
                return [self._blacklist_create(vals, uid) for vals in kwargs["vals_list"]]
            return [self._create(model, vals, uid)["id"] for vals in kwargs["vals_list"]]
        if method == "write":
            for i in ids:
                self._write(model, self._get(model, i), kwargs["vals"], uid)
            return True
        if method == "unlink":
            for i in ids:
                del self.tables[model][self._get(model, i)["id"]]
            return True
        if method == "message_post" and len(ids) == 1:
            self._get(model, ids[0])
            body = kwargs.get("body", "")
            return self._create("mail.message", {"model": model, "res_id": ids[0], "body": body,
                                                 "subject": kwargs.get("subject"),
                                                 "message_type": kwargs.get("message_type")},
                                uid)["id"]
        raise OdooError("builtins.AttributeError",
                        f"The method '{method}' does not exist on the model '{model}'")

    def _blacklist_create(self, vals: dict[str, Any], uid: int) -> int:
        """Odoo's ``mail.blacklist.create``: the address normalised, an existing row (even an
        archived one, left archived) returned rather than a second one made."""
        email = _normalise(vals.get("email"))
        for row in self.tables["mail.blacklist"].values():
            if row["email"] == email:
                return int(row["id"])
        return int(self._create("mail.blacklist", {**vals, "email": email}, uid)["id"])

    def blacklisted(self, email: Any) -> bool:
        """Odoo's ``is_blacklisted``: an active ``mail.blacklist`` row has the address."""
        address = _normalise(email, strict=False)
        return bool(address) and any(r["email"] == address and r.get("active")
                                     for r in self.tables["mail.blacklist"].values())

    def _get(self, model: str, rid: int) -> dict[str, Any]:
        row = self.tables[model].get(rid)
        if row is None:
            raise OdooError("odoo.exceptions.MissingError",
                            "Record does not exist or has been deleted.\n"
                            f"(Record: {model}({rid},), User: {self.uid})")
        return row

    def _check(self, model: str, vals: dict[str, Any]) -> None:
        for name in vals:
            if name not in SCHEMA[model]:
                raise OdooError("builtins.ValueError", f"Invalid field {name!r} on model {model!r}")
        if vals.get("email") and "@" not in str(vals["email"]):
            raise OdooError("odoo.exceptions.ValidationError", f"Invalid email {vals['email']}")
        user = vals.get("user_id")
        if user and model != "res.users" and user not in self.tables["res.users"]:
            raise OdooError("odoo.exceptions.ValidationError",
                            "The operation cannot be completed: another model requires the "
                            "record being deleted. If possible, archive it instead.\n\n"
                            f"Model: {model}, Field: user_id")

    def _create(self, model: str, vals: dict[str, Any], uid: int = HUMAN_UID,
                stamp: datetime | None = None) -> dict[str, Any]:
        self._check(model, vals)
        missing = sorted(f for f in REQUIRED.get(model, ()) if not vals.get(f))
        if missing:
            raise OdooError("odoo.exceptions.ValidationError",
                            f"The operation cannot be completed: missing required field {missing[0]}")
        rid = max(self.tables[model], default=0) + 1
        now = odoo_time(stamp or self.now())
        row = {"id": rid, "create_date": now, "create_uid": uid, "active": True,
               **{f: [] for f in MANY2MANY & SCHEMA[model]}}
        self.tables[model][rid] = row
        self._write(model, row, vals, uid, stamp)
        return row

    def _write(self, model: str, row: dict[str, Any], vals: dict[str, Any], uid: int,
               stamp: datetime | None = None) -> None:
        self._check(model, vals)
        if model == "mail.blacklist" and "email" in vals:
            vals = {**vals, "email": _normalise(vals["email"])}
            if any(r["email"] == vals["email"] and r["id"] != row["id"]
                   for r in self.tables[model].values() if "email" in r):
                raise OdooError("odoo.exceptions.ValidationError", "Email address already exists!")
        for name, value in vals.items():
            if name in MANY2MANY:
                row[name] = _apply_commands(row.get(name, []), value)
            else:
                row[name] = value
        row.update(write_date=odoo_time(stamp or self.now()), write_uid=uid)

    def _read(self, model: str, row: dict[str, Any], fields: list[str] | None) -> dict:
        names = fields or [*SCHEMA[model], "create_date", "write_date", "write_uid"]
        out: dict[str, Any] = {"id": row["id"]}
        for name in names:
            value = row.get(name, False)
            if model == "res.partner" and name == "is_blacklisted":
                value = self.blacklisted(row.get("email"))
            if name in MANY2ONE and value:
                label = self.tables.get("res.users", {}).get(value, {}).get("name", str(value))
                value = [value, label]
            out[name] = False if value is None else value
        return out

    def _search(self, model: str, domain: list[Any], context: dict[str, Any],
                kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        if model == "mail.blacklist":  # Odoo's _search normalises the address searched
            domain = [_email_leaf(leaf) for leaf in domain]
        rows = [r for r in self.tables[model].values()
                if (context.get("active_test", True) is False or r.get("active", True))
                and _evaluate(domain, r)]
        for part in reversed([p.strip() for p in (kwargs.get("order") or "id").split(",")]):
            name, _, direction = part.partition(" ")
            rows.sort(key=lambda r, n=name: (r.get(n) is None, r.get(n) or ""),
                      reverse=direction.lower() == "desc")
        offset, limit = kwargs.get("offset") or 0, kwargs.get("limit")
        return rows[offset:offset + limit if limit else None]

    # --- the contract's view of the host -------------------------------------------
    def _tag_ids(self, tags: Any) -> list[int]:
        out = []
        for tag in tags:
            found = [r["id"] for r in self.tables["res.partner.category"].values()
                     if r["name"] == tag]
            out.append(found[0] if found else self._create("res.partner.category",
                                                           {"name": tag})["id"])
        return out

    def blacklist(self, email: str, active: bool = True) -> int:
        """Odoo's own "Blacklist" action (or the mass-mailing unsubscribe page)."""
        with self.lock:
            rid = self._blacklist_create({"email": email}, HUMAN_UID)
            self._write("mail.blacklist", self.tables["mail.blacklist"][rid], {"active": active}, HUMAN_UID)
            return rid

    def add_contact(self, *, email: str, first_name: str, last_name: str, tags: Any = ()) -> str:
        with self.lock:
            vals = {"name": f"{first_name} {last_name}", "email": email,
                    "category_id": [[6, 0, self._tag_ids(tags)]]}
            return str(self._create("res.partner", vals, HUMAN_UID)["id"])

    def change_contact(self, external_id: str, *, by_integration: bool = False,
                       backdate: float = 0.0, **fields: Any) -> None:
        with self.lock:
            row = self.tables["res.partner"][int(external_id)]
            first, _, last = row["name"].rpartition(" ")
            first, last = fields.pop("first_name", first), fields.pop("last_name", last)
            vals = {"name": f"{first} {last}", **fields}
            self._write("res.partner", row, vals, INTEGRATION_UID if by_integration else HUMAN_UID,
                        self.now() - timedelta(seconds=backdate))

    def forbid_owner_listing(self) -> None:
        """The integration user loses the group that reads users."""
        self.denied.add("res.users")

    def delete_contact(self, external_id: str) -> None:
        with self.lock:  # "delete" in the UI of most installs is archiving
            row = self.tables["res.partner"][int(external_id)]
            self._write("res.partner", row, {"active": False}, HUMAN_UID)

    def written(self, kind: str, key: str) -> list[dict[str, Any]]:
        model, text, link = {
            "lead": ("crm.lead", "description", "partner_id"),
            "task": ("mail.activity", "note", "res_id"),
            "phone_call": ("mail.activity", "note", "res_id"),
            "appointment": ("calendar.event", "description", "partner_ids"),
            "email": ("mail.message", "body", "res_id")}[kind]
        category = {"task": "default", "phone_call": "phonecall"}.get(kind)
        out = []
        for row in self.tables[model].values():
            if key not in str(row.get(text) or ""):
                continue
            if category and self.tables["mail.activity.type"][row["activity_type_id"]][
                    "category"] != category:
                continue
            contact = row.get(link)
            contact = contact[0] if isinstance(contact, list) and contact else contact
            out.append({"id": str(row["id"]), "contact": str(contact) if contact else None,
                        "subject": row.get("summary") or row.get("name") or row.get("subject"),
                        "row": row})
        return out

    def contact_tags(self, external_id: str) -> set[str]:
        row = self.tables["res.partner"][int(external_id)]
        return {self.tables["res.partner.category"][i]["name"] for i in row["category_id"]}

    def contact_value(self, external_id: str, field: str) -> Any:
        row = self.tables["res.partner"][int(external_id)]
        first, _, last = row["name"].rpartition(" ")
        return {"first_name": first, "last_name": last}.get(field, row.get(field))

    def rate_limit_next(self, retry_after: int) -> None:
        self.inject(429, {"name": "werkzeug.exceptions.TooManyRequests",
                          "message": "Too many requests"},
                    headers={"Retry-After": str(retry_after)})

    def exhaust_daily_budget(self) -> None:
        self.daily_limit = self.daily_used.get(self.now().date().isoformat(), 0)


def _normalise(email: Any, strict: bool = True) -> str | None:
    """``mail.blacklist._sanitize_email``: the one address in the string, lower case."""
    text = str(email or "").strip()
    if "<" in text and text.endswith(">"):
        text = text[text.rindex("<") + 1:-1].strip()
    if text.count("@") != 1 or " " in text:
        if strict:
            raise OdooError("odoo.exceptions.UserError", f"Invalid email address {email!r}")
        return None
    return text.lower()


def _email_leaf(leaf: Any) -> Any:
    if isinstance(leaf, list) and leaf[0] == "email" and isinstance(leaf[2], str):
        return [leaf[0], leaf[1], _normalise(leaf[2], strict=False) or leaf[2]]
    return leaf


def _apply_commands(current: list[int], commands: Any) -> list[int]:
    ids = list(current)
    for command in commands or []:
        code = command[0]
        if code == 4 and command[1] not in ids:
            ids.append(command[1])
        elif code == 3:
            ids = [i for i in ids if i != command[1]]
        elif code == 6:
            ids = list(command[2])
        elif code == 5:
            ids = []
    return ids


def _evaluate(domain: list[Any], row: dict[str, Any]) -> bool:
    stack: list[bool] = []
    for item in reversed(domain):
        if item in ("&", "|"):
            left, right = stack.pop(), stack.pop()  # both, always: no short circuit
            stack.append((left and right) if item == "&" else (left or right))
        elif item == "!":
            stack.append(not stack.pop())
        else:
            stack.append(_leaf(row, *item))
    return all(stack)


def _leaf(row: dict[str, Any], name: str, op: str, value: Any) -> bool:
    actual = row.get(name)
    if isinstance(actual, list) and op in ("=", "in"):
        wanted = value if isinstance(value, list) else [value]
        return any(v in actual for v in wanted)
    if op == "=":
        return actual == value or (value is False and not actual)
    if op == "!=":
        return actual != value
    if op in ("ilike", "like", "not ilike"):
        found = str(value).lower() in str(actual or "").lower()
        return found != (op == "not ilike")
    if op == "in":
        return actual in value
    if op == "not in":
        return actual not in value
    if actual in (None, False):
        return False
    return {">": actual > value, ">=": actual >= value, "<": actual < value,
            "<=": actual <= value}[op]


"""Odoo: the JSON-2 API (19+) with a bearer API key, JSON-RPC ``execute_kw`` before 19.

Contacts are ``res.partner`` rows polled on ``write_date`` with keyset pages
(``write_date, id``). Odoo stamps ``write_date`` when a transaction starts, not when it
commits, so a long transaction surfaces late: the overlap window exists for exactly that.
Archived partners come back as deletions (``active_test`` off). Odoo has no upsert by
external id, so every record the plugin creates carries a marker with its idempotency key
(lead and event descriptions, activity notes, chatter bodies), searched before creating;
a finished activity is gone from ``mail.activity`` but its note lives on in the chatter.
Tags are ``res.partner.category`` rows linked through ``category_id``.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from crm_journeys.connectors.base import (
    ActivitySpec,
    CanonicalContact,
    Connector,
    EmailSpec,
    LeadSpec,
    Owner,
    WriteResult,
)
from crm_journeys.connectors.cursor import Chunk, SyncState, WindowedSync
from crm_journeys.connectors.explain import HostHints, explain, explaining
from crm_journeys.connectors.http import Auth, HttpClient, client_options, long_wait_rule
from crm_journeys.connectors.mapping import (
    marker,
    opt_out,
    opted_out,
    parse_time,
    signup_of,
    split_name,
    with_marker,
)
from crm_journeys.errors import FatalConnectorError, RetriableConnectorError

PARTNER_FIELDS = ["name", "email", "phone", "user_id", "tz", "lang", "category_id",
                  "create_date", "write_date", "write_uid", "active", "is_blacklisted"]
SIMPLE = {"email": "email", "phone": "phone", "owner": "user_id", "time_zone": "tz",
          "language": "lang"}
READS = frozenset({"search_read", "read", "search", "search_count", "write"})
ACTIVITY_CATEGORY = {"task": "default", "phone_call": "phonecall"}
HINTS = HostHints(
    "Odoo",
    unauthorized="the API key was refused; create a new one for the integration user "
                 "(Preferences > Account Security > New API Key) and reinstall",
    forbidden="the integration user lacks access rights on the model named; add it to the "
              "Sales and Contacts user groups in Odoo",
    unknown_field=(r"Invalid field '([^']+)'",))
OPT_OUT = "email_opt_out"  # canonical; Odoo's is_blacklisted is computed from mail.blacklist
OWNERS_PAGE = 200  # Odoo answers whatever ``limit`` asks; pages keep answers small
FATAL = {"MissingError": 404, "AccessError": 403, "AccessDenied": 401, "ValidationError": 422,
         "UserError": 422, "ValueError": 422, "KeyError": 404, "AttributeError": 400}


def odoo_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


class OdooConnector(WindowedSync, Connector):
    """An Odoo database reached with a user's API key."""

    name = "odoo"
    label = "Odoo"
    capabilities = frozenset({"deletes", "echo", "phone_call", "appointment", "log_email",
                              "owners"})
    overlap = timedelta(minutes=5)

    def __init__(self, settings: dict[str, Any] | None = None,
                 credentials: dict[str, Any] | None = None, **context: Any):
        super().__init__(settings, credentials, **context)
        self.database = self.settings.get("database")
        self.version = int(self.settings.get("version", 19))
        self.key = self.credentials["api_key"]
        self._uid: int | None = self.settings.get("uid")
        self._ids = itertools.count(1)
        self._cache: dict[str, int] = {}
        url = self.settings["url"].rstrip("/")
        headers = {"X-Odoo-Database": self.database} if self.database else {}
        self.http = HttpClient(
            url, account=f"odoo:{url}:{self.database}", message_of=explaining(odoo_message, HINTS),
            auth=Auth({"Authorization": f"bearer {self.key}"} if self.version >= 19 else {}),
            budget_rule=long_wait_rule(60), default_headers=headers, secrets=[self.key],
            rate=self.settings.get("requests_per_second", 10.0), burst=20,
            **client_options(context))

    # --- the two transports ---------------------------------------------------------
    def call(self, model: str, method: str, ids: list[int] | None = None, **kwargs: Any) -> Any:
        """One ORM call: ``model.method(ids, **kwargs)`` over JSON-2 or JSON-RPC."""
        idempotent = method in READS
        if self.version >= 19:
            body = {**({"ids": ids} if ids is not None else {}), **kwargs}
            return self.http.post(f"/json/2/{model}/{method}", json=body, idempotent=idempotent)
        args = [self.database, self.uid, self.key, model, method, [ids] if ids is not None else [],
                kwargs]
        return self._rpc("object", "execute_kw", args, idempotent)

    def _rpc(self, service: str, method: str, args: list[Any], idempotent: bool) -> Any:
        body = self.http.post("/jsonrpc", idempotent=idempotent, json={
            "jsonrpc": "2.0", "method": "call", "id": next(self._ids),
            "params": {"service": service, "method": method, "args": args}})
        error = body.get("error")
        if not error:
            return body.get("result")
        data = error.get("data") or {}
        kind = str(data.get("name", "")).rsplit(".", 1)[-1]
        message = self.http.redact(f"odoo {method}: {kind}: {data.get('message') or error.get('message')}")
        if kind in FATAL:
            raise FatalConnectorError(explain(HINTS, FATAL[kind], message), status=FATAL[kind])
        raise RetriableConnectorError(message)  # serialization failures, server restarts

    @property
    def uid(self) -> int:
        """Our user id: settings, else asked once (JSON-2 answers it from the key)."""
        if self._uid is None:
            if self.version >= 19:
                self._uid = int(self.call("res.users", "search", domain=[
                    ["login", "=", self.settings["login"]]], limit=1)[0])
            else:
                self._uid = self._rpc("common", "authenticate", [
                    self.database, self.settings["login"], self.key, {}], True)
                if not self._uid:
                    raise FatalConnectorError(explain(HINTS, 401, "login or API key refused"), status=401)
        return int(self._uid)

    # --- reading --------------------------------------------------------------------
    def _partners(self, domain: list[Any], order: str, limit: int, everything: bool) -> list[dict]:
        context = {"active_test": False} if everything else {}
        return self.call("res.partner", "search_read", domain=domain, fields=PARTNER_FIELDS,
                         order=order, limit=limit, context=context)

    def full_page(self, token: Any, page_size: int) -> Chunk:
        domain = [["id", ">", token]] if token else []
        rows = self._partners(domain, "id asc", page_size, everything=False)
        nxt = rows[-1]["id"] if len(rows) == page_size else None
        return Chunk(self._contacts(rows), nxt)

    def changes_page(self, since: datetime, token: Any, page_size: int, state: SyncState) -> Chunk:
        if token:  # keyset: strictly after the last (write_date, id) delivered
            stamp, last = token
            domain = ["|", ["write_date", ">", stamp],
                      "&", ["write_date", "=", stamp], ["id", ">", last]]
        else:
            domain = [["write_date", ">=", odoo_time(since)]]
        rows = self._partners(domain, "write_date asc, id asc", page_size, everything=True)
        nxt = [rows[-1]["write_date"], rows[-1]["id"]] if len(rows) == page_size else None
        return Chunk(self._contacts(rows), nxt)

    def fetch_contact(self, external_id: str) -> CanonicalContact | None:
        try:
            rows = self.call("res.partner", "read", [int(external_id)], fields=PARTNER_FIELDS,
                             context={"active_test": False})
        except FatalConnectorError as exc:
            if exc.status == 404:
                return None
            raise
        contact = self._contacts(rows)[0] if rows else None
        return None if contact is None or contact.deleted else contact

    def _contacts(self, rows: list[dict[str, Any]]) -> list[CanonicalContact]:
        tag_ids = sorted({t for row in rows for t in row.get("category_id") or []})
        names = {r["id"]: r["name"] for r in self.call(
            "res.partner.category", "read", tag_ids, fields=["name"])} if tag_ids else {}
        return [self._contact(row, names) for row in rows]

    def _contact(self, row: dict[str, Any], tag_names: dict[int, str]) -> CanonicalContact:
        first, last = split_name(row.get("name"))
        writer = row.get("write_uid")
        return CanonicalContact(
            external_id=str(row["id"]), first_name=first, last_name=last,
            email=row.get("email") or None, phone=row.get("phone") or None,
            owner=str(row["user_id"][0]) if row.get("user_id") else None,
            time_zone=row.get("tz") or None, language=row.get("lang") or None,
            created_at=parse_time(row.get("create_date")),
            signup_date=signup_of(row.get("create_date")),
            modified_at=parse_time(row.get("write_date")), version=row.get("write_date"),
            tags=[tag_names[t] for t in row.get("category_id") or [] if t in tag_names],
            fields=opt_out(row.get("is_blacklisted")),  # the mail blacklist (mail.thread.blacklist)
            deleted=row.get("active") is False,
            echo=isinstance(writer, list) and writer[0] == self.uid)

    # --- writing --------------------------------------------------------------------
    def create_lead(self, contact_ref: str, spec: LeadSpec, idempotency_key: str) -> WriteResult:
        vals = {"name": spec.title, "partner_id": int(contact_ref), "type":
                self.settings.get("lead_type", "lead"), "user_id": _int(spec.owner),
                "expected_revenue": spec.value,
                "description": with_marker(spec.description, idempotency_key)}
        return self._create_once("crm.lead", "description", idempotency_key, vals)

    def create_activity(self, contact_ref: str, spec: ActivitySpec,
                        idempotency_key: str) -> WriteResult:
        if spec.kind == "appointment":
            end = spec.due_at + timedelta(minutes=spec.duration_minutes)
            vals = {"name": spec.subject, "start": odoo_time(spec.due_at),
                    "stop": odoo_time(end), "partner_ids": [[4, int(contact_ref)]],
                    "user_id": _int(spec.owner),
                    "description": with_marker(spec.description, idempotency_key)}
            return self._create_once("calendar.event", "description", idempotency_key, vals)
        vals = {"res_model_id": self._model_id("res.partner"), "res_id": int(contact_ref),
                "activity_type_id": self._activity_type(ACTIVITY_CATEGORY[spec.kind]),
                "summary": spec.subject, "date_deadline": spec.due_at.date().isoformat(),
                "user_id": _int(spec.owner),
                "note": with_marker(spec.description, idempotency_key)}
        return self._create_once("mail.activity", "note", idempotency_key, vals)

    def log_email(self, contact_ref: str, email: EmailSpec, idempotency_key: str) -> WriteResult:
        found = self._marked("mail.message", "body", idempotency_key)
        if found:
            return WriteResult(found, created=False)
        message = self.call("res.partner", "message_post", [int(contact_ref)],
                            body=with_marker(email.html, idempotency_key),
                            subject=email.subject, message_type="comment",
                            subtype_xmlid="mail.mt_note")
        return WriteResult(str(message), created=True)

    def add_tag(self, contact_ref: str, tag: str, idempotency_key: str) -> WriteResult:
        tag_id = self._tag_id(tag, create=True)
        self.call("res.partner", "write", [int(contact_ref)], vals={"category_id": [[4, tag_id]]})
        return WriteResult(contact_ref, created=False)

    def remove_tag(self, contact_ref: str, tag: str, idempotency_key: str) -> WriteResult:
        tag_id = self._tag_id(tag, create=False)
        if tag_id:
            self.call("res.partner", "write", [int(contact_ref)],
                      vals={"category_id": [[3, tag_id]]})
        return WriteResult(contact_ref, created=False)

    def update_fields(self, contact_ref: str, values: dict[str, Any],
                      idempotency_key: str) -> WriteResult:
        """Partner fields by ``write``; ``email_opt_out`` through the ``mail.blacklist``
        model, since the partner's ``is_blacklisted`` is computed from it."""
        values = dict(values)
        notes = []
        if OPT_OUT in values:
            notes.append(self._write_opt_out(contact_ref, values.pop(OPT_OUT)))
        if values:
            vals = {SIMPLE.get(k, k): v for k, v in values.items()
                    if k not in ("first_name", "last_name")}
            if "first_name" in values or "last_name" in values:  # Odoo keeps one name field
                [row] = self.call("res.partner", "read", [int(contact_ref)], fields=["name"])
                first, last = split_name(row["name"])
                first, last = values.get("first_name", first), values.get("last_name", last)
                vals["name"] = " ".join(p for p in (first, last) if p)
            self.call("res.partner", "write", [int(contact_ref)], vals=vals)
            notes.insert(0, f"updated {sorted(values)}")
        return WriteResult(contact_ref, created=False, detail="; ".join(notes))

    def _write_opt_out(self, contact_ref: str, value: Any) -> str:
        """True: an active ``mail.blacklist`` row for the address (created, or an archived
        one restored). False: the active row archived, as Odoo's own "unblacklist" does.
        Idempotent in effect: a repeat finds the row as wanted and changes nothing."""
        email = self._email_of(contact_ref)
        rows = self.call("mail.blacklist", "search_read", domain=[["email", "=", email]],
                         fields=["email", "active"], context={"active_test": False})
        active = [r for r in rows if r.get("active")]
        if opted_out(value):
            if active:
                return f"{email} already in Odoo's mail blacklist"
            if rows:
                self.call("mail.blacklist", "write", [rows[0]["id"]], vals={"active": True})
            else:
                self.call("mail.blacklist", "create", vals_list=[{"email": email}])
            return f"added {email} to Odoo's mail blacklist"
        if not active:
            return f"{email} not in Odoo's mail blacklist"
        self.call("mail.blacklist", "write", [r["id"] for r in active], vals={"active": False})
        return f"removed {email} from Odoo's mail blacklist"

    def _email_of(self, contact_ref: str) -> str:
        """The blacklist is keyed by the normalised address: the ref may be one already,
        else the partner's ``email`` is read."""
        email: Any = contact_ref
        if "@" not in contact_ref:
            [row] = self.call("res.partner", "read", [int(contact_ref)], fields=["email"],
                              context={"active_test": False})
            email = row.get("email")
            if not email:
                raise FatalConnectorError(f"Odoo contact {contact_ref} has no email address to "
                                          "add to the mail blacklist", status=422)
        return str(email).strip().lower()

    def _marked(self, model: str, field: str, key: str) -> str | None:
        context = {"active_test": False}
        ids = self.call(model, "search", domain=[[field, "ilike", marker(key)]], limit=1,
                        context=context)
        return str(ids[0]) if ids else None

    def _create_once(self, model: str, field: str, key: str, vals: dict[str, Any]) -> WriteResult:
        found = self._marked(model, field, key)
        if not found and model == "mail.activity":  # done activities live on as messages
            found = self._marked("mail.message", "body", key)
        if found:
            return WriteResult(found, created=False)
        ids = self.call(model, "create", vals_list=[{k: v for k, v in vals.items()
                                                     if v is not None}])
        return WriteResult(str(ids[0]), created=True)

    def _tag_id(self, name: str, create: bool) -> int | None:
        ids = self.call("res.partner.category", "search", domain=[["name", "=", name]], limit=1)
        if ids or not create:
            return ids[0] if ids else None
        return self.call("res.partner.category", "create", vals_list=[{"name": name}])[0]

    def _model_id(self, model: str) -> int:
        if model not in self._cache:
            self._cache[model] = self.call("ir.model", "search",
                                           domain=[["model", "=", model]], limit=1)[0]
        return self._cache[model]

    def _activity_type(self, category: str) -> int:
        slot = f"activity:{category}"
        if slot not in self._cache:
            ids = self.call("mail.activity.type", "search",
                            domain=[["category", "=", category]], limit=1)
            if not ids:
                raise FatalConnectorError(f"odoo has no activity type of category {category!r}")
            self._cache[slot] = ids[0]
        return self._cache[slot]

    def list_owners(self) -> list[Owner]:
        """Internal users (``share`` false; portal and public users share), active ones only
        (Odoo's default ``active_test``), ``limit``/``offset`` pages until a short one."""
        owners: list[Owner] = []
        while True:
            rows = self.call("res.users", "search_read", domain=[["share", "=", False]],
                             fields=["name", "login", "email"], order="name, id",
                             limit=OWNERS_PAGE, offset=len(owners))
            owners += [Owner(str(r["id"]), r.get("name") or r["login"],
                             r.get("email") or (r["login"] if "@" in str(r.get("login")) else None))
                       for r in rows]
            if len(rows) < OWNERS_PAGE:
                return owners

    def picker_values(self, picker: str) -> list[str]:
        if picker == "fields":
            return sorted([*SIMPLE, "first_name", "last_name", "signup_date"])
        if picker == "tags":
            return [r["name"] for r in self.call("res.partner.category", "search_read",
                                                 domain=[], fields=["name"], order="name")]
        return []


def odoo_message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    return f"{body.get('name', '')}: {body.get('message', '')}"[:500]


def _int(value: str | None) -> int | None:
    """An owner's ``res.users`` id. An email here means a journey published before owners
    were resolved at publish: refuse before writing anything, saying how to fix it."""
    if not value:
        return None
    if not str(value).isdigit():
        raise FatalConnectorError(f"odoo: owner {value!r} is not a user id; publish the "
                                  "journey again so its owners are resolved to Odoo users")
    return int(value)

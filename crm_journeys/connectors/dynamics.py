"""Dynamics 365 / Dataverse: the OData v4 Web API with change tracking and alternate keys.

Contacts sync through change tracking: the initial listing asks for
``Prefer: odata.track-changes`` and ends with an ``@odata.deltaLink``; following it later
returns what changed or was deleted since, and the next delta link. The cursor is that
link, so no overlap window is needed; versions still de-duplicate a page read twice.
Writes go to the alternate key ``crmj_journeyskey`` with ``If-None-Match: *`` (create, never
overwrite; 412 when it exists). Activities are linked through "regarding". Webhooks come
from a service endpoint with a shared secret (an HTTP header or the ``code`` parameter).
"""

from __future__ import annotations

import hmac
import json
import re
from datetime import timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlsplit

import requests

from crm_journeys.clock import Clock
from crm_journeys.connectors.base import (
    ActivitySpec,
    CanonicalContact,
    Connector,
    EmailSpec,
    InboundRequest,
    LeadSpec,
    SyncPage,
    WebhookHint,
    WriteResult,
)
from crm_journeys.connectors.cursor import SyncState
from crm_journeys.connectors.http import (
    Auth,
    Call,
    HttpClient,
    NextLinkPaginator,
    client_options,
    long_wait_rule,
)
from crm_journeys.connectors.mapping import (
    RewritesTags,
    canonical,
    iso_z,
    opt_out,
    parse_time,
    split_tags,
)
from crm_journeys.connectors.oauth import dynamics_app, keeper_for
from crm_journeys.errors import FatalConnectorError, WebhookRejected

FIELDS = {"email": "emailaddress1", "first_name": "firstname", "last_name": "lastname",
          "phone": "telephone1", "owner": "_ownerid_value", "birthday": "birthdate",
          "email_opt_out": "donotbulkemail"}
ACTIVITY_SETS = {"task": ("tasks", "task"), "phone_call": ("phonecalls", "phonecall"),
                 "appointment": ("appointments", "appointment")}
HEADERS = {"OData-MaxVersion": "4.0", "OData-Version": "4.0", "Accept": "application/json"}
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
EXPIRED_TOKEN = "0x80044352"  # "the version stamp associated with the client has expired"


def dataverse_message(response: requests.Response) -> str:
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        return response.text[:500]
    return f"{error.get('code', '')}: {error.get('message', '')}"[:500]


def guid(value: str) -> str:
    if not _GUID.match(value or ""):
        raise FatalConnectorError(f"not a Dataverse id: {value!r}")
    return value


class DynamicsConnector(RewritesTags, Connector):
    """A Dataverse environment reached with an Entra ID (Azure AD) access token."""

    name = "dynamics"
    label = "Dynamics 365"
    capabilities = frozenset({"webhooks", "deletes", "echo", "phone_call", "appointment",
                              "log_email", "send_email"})
    key_column: ClassVar[str] = "crmj_journeyskey"

    def __init__(self, settings: dict[str, Any] | None = None,
                 credentials: dict[str, Any] | None = None, **context: Any):
        super().__init__(settings, credentials, **context)
        self.tags_column = self.settings.get("tags_column", "crmj_tags")
        self.integration_user = self.settings.get("integration_user_id")
        self.custom_fields = list(self.settings.get("custom_fields", []))
        self.clock = context.get("clock") or Clock()
        url = self.settings["environment_url"].rstrip("/")
        self.http = HttpClient(
            f"{url}/api/data/v9.2/", account=f"dynamics:{urlsplit(url).netloc}",
            auth=Auth.bearer(self.credentials["access_token"], self._refresher()),
            budget_rule=long_wait_rule(self.settings.get("circuit_after_seconds", 60)),
            message_of=dataverse_message, default_headers=HEADERS,
            rate=self.settings.get("requests_per_second", 20.0), burst=50,
            secrets=[self.credentials.get("webhook_secret"), self.credentials.get("refresh_token")],
            **client_options(context))

    @property
    def select(self) -> str:
        return ",".join(["contactid", *FIELDS.values(), self.tags_column, "createdon",
                         "modifiedon", "versionnumber", "_modifiedby_value", *self.custom_fields])

    def _refresher(self) -> Any:
        """Renews the access token after a 401: the runtime's hook, else OAuth refresh."""
        app = dynamics_app(self.settings["environment_url"],
                           self.settings.get("entra_tenant", "organizations"),
                           self.settings.get("login_url", "https://login.microsoftonline.com"))
        return self.context.get("refresh_access_token") or keeper_for(
            app, self.credentials, self.context)

    # --- reading --------------------------------------------------------------------
    def sync_page(self, cursor: str | None, page_size: int = 100) -> SyncPage:
        state = SyncState.decode(cursor) or SyncState()
        call = Call("GET", "contacts", params={"$select": self.select}, headers={
            "Prefer": f"odata.track-changes,odata.maxpagesize={page_size}"})
        try:
            page = self.http.page(call, NextLinkPaginator(), state.token, page_size)
        except FatalConnectorError as exc:
            if EXPIRED_TOKEN not in str(exc) or not state.token:
                raise
            state = SyncState()  # the delta token aged out: start over with a full listing
            page = self.http.page(call, NextLinkPaginator(), None, page_size)
        contacts = state.fresh([self._contact(row) for row in page.items])
        state.observe(contacts, timedelta(0))
        done = page.next is None
        state.token = page.next or page.body.get("@odata.deltaLink")
        state.phase = "changes" if done else state.phase
        return SyncPage(contacts, state.encode(), done)

    def fetch_contact(self, external_id: str) -> CanonicalContact | None:
        row = self.http.get(f"contacts({guid(external_id)})", params={"$select": self.select},
                            allow_404=True)
        return self._contact(row) if row else None

    def _contact(self, row: dict[str, Any]) -> CanonicalContact:
        if str(row.get("@odata.context", "")).endswith("$deletedEntity"):
            return CanonicalContact(external_id=row["id"], deleted=True,
                                    modified_at=self.clock.now(), version=f"deleted:{row['id']}")
        return canonical(
            row["contactid"], {name: row.get(c) for name, c in FIELDS.items()},
            created_at=parse_time(row.get("createdon")),
            modified_at=parse_time(row.get("modifiedon")),
            version=str(row.get("versionnumber")), tags=split_tags(row.get(self.tags_column)),
            fields={**{f: row.get(f) for f in self.custom_fields if row.get(f) is not None},
                    **opt_out(row.get("donotbulkemail"))},
            echo=bool(self.integration_user) and row.get("_modifiedby_value") == self.integration_user)

    # --- webhooks -------------------------------------------------------------------
    def verify_webhook(self, request: InboundRequest) -> None:
        secret = self.credentials.get("webhook_secret") or ""
        header = self.settings.get("webhook_header", "x-crmj-secret")
        # WebhookKey auth puts the secret in ?code=, HttpHeader auth in a header of our choice.
        given = [request.header(header) or "",
                 *parse_qs(urlsplit(request.url).query).get("code", [])]
        if not secret or not any(hmac.compare_digest(g.encode(), secret.encode()) for g in given):
            raise WebhookRejected("Dynamics webhook secret does not match")
        created = parse_time(self._context(request).get("OperationCreatedOn"))
        max_age = timedelta(seconds=self.settings.get("webhook_max_age_seconds", 3600))
        if created is None or abs(request.received_at - created) > max_age:
            raise WebhookRejected("Dynamics webhook is older than the accepted window")

    def parse_webhook(self, request: InboundRequest) -> list[WebhookHint]:
        context = self._context(request)
        user = context.get("InitiatingUserId") or context.get("UserId")
        message = str(context.get("MessageName", "")).lower()
        target: dict[str, Any] = next((p["value"] for p in context.get("InputParameters", [])
                       if p.get("key") == "Target" and isinstance(p.get("value"), dict)), {})
        return [WebhookHint(
            event_id=str(context.get("OperationId") or context.get("RequestId")),
            object_type=str(context.get("PrimaryEntityName")),
            object_id=str(context.get("PrimaryEntityId")),
            change={"create": "created", "update": "updated", "delete": "deleted"}.get(
                message, message),
            occurred_at=parse_time(context.get("OperationCreatedOn")),
            echo=bool(self.integration_user) and user == self.integration_user,
            properties={a["key"]: a.get("value") for a in target.get("Attributes", [])
                        if isinstance(a, dict) and "key" in a})]

    @staticmethod
    def _context(request: InboundRequest) -> dict[str, Any]:
        try:
            body = json.loads(request.body)
        except ValueError:
            raise WebhookRejected("Dynamics webhook body is not JSON") from None
        if not isinstance(body, dict):
            raise WebhookRejected("Dynamics webhook body is not a RemoteExecutionContext")
        return body

    # --- writing --------------------------------------------------------------------
    def create_lead(self, contact_ref: str, spec: LeadSpec, idempotency_key: str) -> WriteResult:
        found = self._find("leads", "leadid", idempotency_key)
        if found:
            return WriteResult(found, created=False)
        person = self.http.get(f"contacts({guid(contact_ref)})",
                               params={"$select": "firstname,lastname,emailaddress1"})
        body = {"subject": spec.title, "description": spec.description or None,
                "firstname": person.get("firstname"), "lastname": person.get("lastname"),
                "emailaddress1": person.get("emailaddress1"), "estimatedamount": spec.value,
                "parentcontactid@odata.bind": f"/contacts({contact_ref})"}
        return self._create_once("leads", "leadid", idempotency_key, body, spec.owner,
                                 looked=True)

    def create_activity(self, contact_ref: str, spec: ActivitySpec,
                        idempotency_key: str) -> WriteResult:
        entity_set, logical = ACTIVITY_SETS[spec.kind]
        body: dict[str, Any] = {"subject": spec.subject, "description": spec.description or None,
                                f"regardingobjectid_contact_{logical}@odata.bind":
                                    f"/contacts({guid(contact_ref)})"}
        end = spec.due_at + timedelta(minutes=spec.duration_minutes)
        if spec.kind == "appointment":
            body.update(scheduledstart=iso_z(spec.due_at), scheduledend=iso_z(end))
        else:
            body["scheduledend"] = iso_z(spec.due_at)
        if spec.kind == "phone_call":
            body["directioncode"] = True  # outgoing
        return self._create_once(entity_set, "activityid", idempotency_key, body, spec.owner)

    def log_email(self, contact_ref: str, email: EmailSpec, idempotency_key: str) -> WriteResult:
        return self._create_once("emails", "activityid", idempotency_key,
                                 self._email_body(contact_ref, email), None)

    def send_email(self, contact_ref: str, email: EmailSpec, idempotency_key: str) -> WriteResult:
        """Create the email activity once, then send it unless it already left: the
        ``statecode`` read before ``SendEmail`` makes a repeated row harmless."""
        body = self._email_body(contact_ref, email)
        sender = self.settings.get("sender_user_id") or self.integration_user
        if not sender:
            raise FatalConnectorError("dynamics: set sender_user_id to send email")
        body["email_activity_parties"] = [
            {"partyid_systemuser@odata.bind": f"/systemusers({guid(sender)})",
             "participationtypemask": 1},
            {"partyid_contact@odata.bind": f"/contacts({guid(contact_ref)})",
             "participationtypemask": 2}]
        result = self._create_once("emails", "activityid", idempotency_key, body, None)
        state = self.http.get(f"emails({result.external_id})", params={"$select": "statecode"})
        if state.get("statecode") == 0:
            self.http.post(f"emails({result.external_id})/Microsoft.Dynamics.CRM.SendEmail",
                           json={"IssueSend": True})
            return WriteResult(result.external_id, created=True, detail="sent")
        return WriteResult(result.external_id, created=False, detail="already sent")

    def _email_body(self, contact_ref: str, email: EmailSpec) -> dict[str, Any]:
        return {"subject": email.subject, "description": email.html, "directioncode": True,
                "regardingobjectid_contact_email@odata.bind": f"/contacts({guid(contact_ref)})"}

    def update_fields(self, contact_ref: str, values: dict[str, Any],
                      idempotency_key: str) -> WriteResult:
        body = {FIELDS.get(name, name): value for name, value in values.items()}
        # If-Match: * makes the PATCH an update only: it never recreates a deleted contact.
        self.http.patch(f"contacts({guid(contact_ref)})", json=body, headers={"If-Match": "*"})
        return WriteResult(contact_ref, created=False, detail=f"updated {sorted(values)}")

    def _read_tags(self, contact_ref: str) -> object:
        return self.http.get(f"contacts({guid(contact_ref)})", params={"$select": self.tags_column}).get(self.tags_column)

    def _write_tags(self, contact_ref: str, value: str | None) -> None:
        self.http.patch(f"contacts({guid(contact_ref)})", json={self.tags_column: value},
                        headers={"If-Match": "*"})

    def _by_key(self, entity_set: str, key: str) -> str:
        value = quote(key.replace("'", "''"), safe="")
        return f"{entity_set}({self.key_column}='{value}')"

    def _find(self, entity_set: str, id_column: str, key: str) -> str | None:
        row = self.http.get(self._by_key(entity_set, key), params={"$select": id_column},
                            allow_404=True)
        return row[id_column] if row else None

    def _create_once(self, entity_set: str, id_column: str, key: str, body: dict[str, Any],
                     owner: str | None, looked: bool = False) -> WriteResult:
        found = None if looked else self._find(entity_set, id_column, key)
        if found:
            return WriteResult(found, created=False)
        payload = {k: v for k, v in body.items() if v is not None}
        if owner:
            payload["ownerid@odata.bind"] = f"/systemusers({guid(owner)})"
        try:
            row = self.http.patch(self._by_key(entity_set, key), json=payload, idempotent=True,
                                  params={"$select": id_column},
                                  headers={"If-None-Match": "*", "Prefer": "return=representation"})
        except FatalConnectorError as exc:
            found = self._find(entity_set, id_column, key) if exc.status == 412 else None
            if not found:
                raise
            return WriteResult(found, created=False)
        return WriteResult(row[id_column], created=True)

    # --- installation ---------------------------------------------------------------
    def ensure_schema(self) -> list[str]:
        """Check the alternate keys exist (they ship in the solution)."""
        missing = []
        for logical in ("lead", "task", "phonecall", "appointment", "email"):
            keys = self.http.get(f"EntityDefinitions(LogicalName='{logical}')/Keys",
                                 params={"$select": "LogicalName,KeyAttributes"})["value"]
            if not any(k.get("KeyAttributes") == [self.key_column] for k in keys):
                missing.append(logical)
        if missing:
            raise FatalConnectorError(
                f"dataverse lacks the alternate key {self.key_column} on: {', '.join(missing)}")
        return []


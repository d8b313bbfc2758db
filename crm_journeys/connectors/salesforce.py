"""Salesforce: REST sObjects, SOQL on ``SystemModstamp``, upsert by External ID, composite.

Contacts are read with keyset-paged SOQL (``ORDER BY Id`` for the initial scan,
``ORDER BY SystemModstamp, Id`` for changes, through ``queryAll`` so deletions show), so a
cursor never depends on a query locator that expires. Writes upsert on the External ID
field ``CRM_Journeys_Key__c``; a lead is created in one composite request that reads the
contact and upserts the lead with references to it. Tags live in one ``;``-separated
field. ``Sforce-Limit-Info`` is read on every answer; ``REQUEST_LIMIT_EXCEEDED`` opens
the account's circuit. The org must carry the custom fields (``ensure_schema`` checks).
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import requests

from crm_journeys.connectors.base import (
    ActivitySpec,
    CanonicalContact,
    Connector,
    EmailSpec,
    LeadSpec,
    WriteResult,
)
from crm_journeys.connectors.cursor import Chunk, SyncState, WindowedSync
from crm_journeys.connectors.http import Auth, HttpClient, client_options
from crm_journeys.connectors.mapping import (
    RewritesTags,
    canonical,
    iso_z,
    opt_out,
    parse_time,
    split_tags,
)
from crm_journeys.connectors.oauth import keeper_for, salesforce_app
from crm_journeys.errors import FatalConnectorError

log = logging.getLogger(__name__)

FIELDS = {"email": "Email", "first_name": "FirstName", "last_name": "LastName",
          "phone": "Phone", "owner": "OwnerId", "birthday": "Birthdate", "email_opt_out": "HasOptedOutOfEmail"}
_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def request_limit_rule(cooloff: timedelta) -> Any:
    """``REQUEST_LIMIT_EXCEEDED`` (403): the org's rolling 24-hour allowance is spent.

    Salesforce does not say when enough calls age out of the window, so the circuit stays
    open for ``cooloff`` and the next call after it probes again.
    """

    def rule(response: requests.Response, now: datetime) -> datetime | None:
        if response.status_code == 403 and "REQUEST_LIMIT_EXCEEDED" in response.text:
            return now + cooloff
        return None

    return rule


def salesforce_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    errors = body if isinstance(body, list) else [body]
    return "; ".join(f"{e.get('errorCode', '')}: {e.get('message', '')}"
                     + (f" {e['fields']}" if e.get("fields") else "")
                     for e in errors if isinstance(e, dict))[:500]


def soql_id(value: str) -> str:
    """An id fit to sit inside a SOQL literal (ids are alphanumeric; anything else is refused)."""
    if not _ID.match(value):
        raise FatalConnectorError(f"not a Salesforce id: {value!r}")
    return value


class SalesforceConnector(RewritesTags, WindowedSync, Connector):
    """A Salesforce org reached with an OAuth access token and its instance URL."""

    name = "salesforce"
    label = "Salesforce"
    capabilities = frozenset({"deletes", "echo", "phone_call", "appointment", "log_email"})
    api_version: ClassVar[str] = "v60.0"
    key_field: ClassVar[str] = "CRM_Journeys_Key__c"

    def __init__(self, settings: dict[str, Any] | None = None,
                 credentials: dict[str, Any] | None = None, **context: Any):
        super().__init__(settings, credentials, **context)
        self.tags_field = self.settings.get("tags_field", "CRM_Journeys_Tags__c")
        self.lead_contact_field = self.settings.get("lead_contact_field",
                                                    "CRM_Journeys_Contact__c")
        self.integration_user = self.settings.get("integration_user_id")
        self.custom_fields = list(self.settings.get("custom_fields", []))
        self.api_usage: tuple[int, int] | None = None
        token = self.credentials["access_token"]
        instance = self.credentials.get("instance_url") or self.settings["instance_url"]
        org = self.settings.get("org_id") or hashlib.sha256(instance.encode()).hexdigest()[:12]
        self.http = HttpClient(
            f"{instance.rstrip('/')}/services/data/{self.api_version}/",
            account=f"salesforce:{org}", message_of=salesforce_message,
            auth=Auth.bearer(token, self._refresher()),
            budget_rule=request_limit_rule(
                timedelta(minutes=self.settings.get("budget_cooloff_minutes", 60))),
            rate=self.settings.get("requests_per_second", 10.0), burst=20,
            secrets=[self.credentials.get("refresh_token"),
                     self.credentials.get("client_secret")],
            on_response=self._read_usage, **client_options(context))

    def _read_usage(self, response: requests.Response) -> None:
        match = _USAGE.search(response.headers.get("Sforce-Limit-Info", ""))
        if not match:
            return
        used, limit = int(match.group(1)), int(match.group(2))
        was_high = self.api_usage is not None and self.api_usage[0] * 10 >= limit * 9
        if used * 10 >= limit * 9 and not was_high:
            log.warning("salesforce: %d of %d daily API calls used", used, limit)
        self.api_usage = (used, limit)

    @property
    def contact_fields(self) -> list[str]:
        return ["Id", *FIELDS.values(), self.tags_field, "CreatedDate", "SystemModstamp",
                "LastModifiedById", "IsDeleted", *self.custom_fields]

    def _refresher(self) -> Any:
        """Renews the access token after a 401: the runtime's hook, else OAuth refresh."""
        app = salesforce_app(self.settings.get("login_url", "https://login.salesforce.com"))
        return self.context.get("refresh_access_token") or keeper_for(
            app, self.credentials, self.context)

    # --- reading --------------------------------------------------------------------
    def _soql(self, where: str, order: str, limit: int, everything: bool = False) -> list[dict]:
        query = (f"SELECT {', '.join(self.contact_fields)} FROM Contact"
                 f"{f' WHERE {where}' if where else ''} ORDER BY {order} LIMIT {limit}")
        body = self.http.get("queryAll" if everything else "query", params={"q": query})
        return body["records"]

    def full_page(self, token: Any, page_size: int) -> Chunk:
        where = f"Id > '{soql_id(token)}'" if token else ""
        rows = self._soql(where, "Id", page_size)
        last = rows[-1]["Id"] if len(rows) == page_size else None
        return Chunk([self._contact(r) for r in rows], last)

    def changes_page(self, since: datetime, token: Any, page_size: int, state: SyncState) -> Chunk:
        if token:  # keyset: strictly after the last (SystemModstamp, Id) delivered
            stamp, last_id = token
            where = (f"SystemModstamp > {stamp} OR "
                     f"(SystemModstamp = {stamp} AND Id > '{soql_id(last_id)}')")
        else:
            where = f"SystemModstamp >= {iso_z(since)}"
        rows = self._soql(where, "SystemModstamp, Id", page_size, everything=True)
        more = len(rows) == page_size
        last = parse_time(rows[-1]["SystemModstamp"]) if more else None
        nxt = [iso_z(last), rows[-1]["Id"]] if last else None
        return Chunk([self._contact(r) for r in rows], nxt)

    def fetch_contact(self, external_id: str) -> CanonicalContact | None:
        row = self.http.get(f"sobjects/Contact/{soql_id(external_id)}", allow_404=True,
                            params={"fields": ",".join(self.contact_fields)})
        return self._contact(row) if row and not row.get("IsDeleted") else None

    def _contact(self, row: dict[str, Any]) -> CanonicalContact:
        return canonical(
            row["Id"], {name: row.get(f) for name, f in FIELDS.items()},
            created_at=parse_time(row.get("CreatedDate")),
            modified_at=parse_time(row.get("SystemModstamp")),
            version=row.get("SystemModstamp"), tags=split_tags(row.get(self.tags_field)),
            fields={**{f: row.get(f) for f in self.custom_fields if row.get(f) is not None},
                    **opt_out(row.get("HasOptedOutOfEmail"))},
            deleted=bool(row.get("IsDeleted")),
            echo=bool(self.integration_user) and row.get("LastModifiedById") == self.integration_user)

    # --- writing --------------------------------------------------------------------
    def create_lead(self, contact_ref: str, spec: LeadSpec, idempotency_key: str) -> WriteResult:
        existing = self._find("Lead", idempotency_key)
        if existing:
            return WriteResult(existing, created=False)
        base = f"/services/data/{self.api_version}"
        lead = _clean({"FirstName": "@{contact.FirstName}", "LastName": "@{contact.LastName}",
                       "Email": "@{contact.Email}",
                       "Company": self.settings.get("lead_company", "[not provided]"),
                       "Description": spec.description, "LeadSource": spec.source,
                       "OwnerId": spec.owner, self.lead_contact_field: contact_ref})
        answer = self.http.post("composite", idempotent=True, json={
            "allOrNone": True, "compositeRequest": [
                {"method": "GET", "referenceId": "contact",
                 "url": f"{base}/sobjects/Contact/{soql_id(contact_ref)}"
                        "?fields=FirstName,LastName,Email"},
                {"method": "PATCH", "referenceId": "lead", "body": lead,
                 "url": f"{base}/sobjects/Lead/{self.key_field}/{quote(idempotency_key, safe='')}"}]})
        results = answer["compositeResponse"]
        for part in results:
            if part["httpStatusCode"] >= 400:
                raise FatalConnectorError(
                    f"salesforce composite {part['referenceId']}: "
                    f"{_errors(part['body'])}", status=part["httpStatusCode"])
        body = results[-1]["body"]
        return WriteResult(body["id"], created=bool(body.get("created")))

    def create_activity(self, contact_ref: str, spec: ActivitySpec,
                        idempotency_key: str) -> WriteResult:
        common = {"WhoId": contact_ref, "Subject": spec.subject, "OwnerId": spec.owner,
                  "Description": spec.description}
        if spec.kind == "appointment":
            end = spec.due_at + timedelta(minutes=spec.duration_minutes)
            values = {**common, "StartDateTime": iso_z(spec.due_at), "EndDateTime": iso_z(end)}
            return self._upsert("Event", idempotency_key, values)
        values = {**common, "ActivityDate": spec.due_at.date().isoformat(),
                  "Status": "Not Started", "Priority": "Normal",
                  "TaskSubtype": "Call" if spec.kind == "phone_call" else "Task"}
        return self._upsert("Task", idempotency_key, values)

    def log_email(self, contact_ref: str, email: EmailSpec, idempotency_key: str) -> WriteResult:
        values = {"WhoId": contact_ref, "Subject": f"Email: {email.subject}",
                  "Description": email.text, "Status": "Completed", "TaskSubtype": "Email",
                  "ActivityDate": self.clock.now().date().isoformat()}
        return self._upsert("Task", idempotency_key, values)

    def update_fields(self, contact_ref: str, values: dict[str, Any],
                      idempotency_key: str) -> WriteResult:
        body = {FIELDS.get(name, name): value for name, value in values.items()}
        self.http.patch(f"sobjects/Contact/{soql_id(contact_ref)}", json=body)
        return WriteResult(contact_ref, created=False, detail=f"updated {sorted(values)}")

    def _read_tags(self, contact_ref: str) -> object:
        return self.http.get(f"sobjects/Contact/{soql_id(contact_ref)}", params={"fields": self.tags_field}).get(self.tags_field)

    def _write_tags(self, contact_ref: str, value: str | None) -> None:
        self.http.patch(f"sobjects/Contact/{soql_id(contact_ref)}", json={self.tags_field: value})

    def _find(self, sobject: str, key: str) -> str | None:
        row = self.http.get(f"sobjects/{sobject}/{self.key_field}/{quote(key, safe='')}", allow_404=True,
                            params={"fields": "Id"})
        return row["Id"] if row else None

    def _upsert(self, sobject: str, key: str, values: dict[str, Any]) -> WriteResult:
        """Found by key: leave it as the salesperson left it. Else upsert by key, which
        stays single under concurrent retries."""
        existing = self._find(sobject, key)
        if existing:
            return WriteResult(existing, created=False)
        # Resending after a lost answer turns the create into an update, which Salesforce
        # refuses for create-only fields (TaskSubtype): then the outbox retry finds it.
        body = self.http.patch(f"sobjects/{sobject}/{self.key_field}/{quote(key, safe='')}",
                               json=_clean(values), idempotent="TaskSubtype" not in values)
        return WriteResult(body["id"], created=bool(body.get("created")))

    # --- installation ---------------------------------------------------------------
    def ensure_schema(self) -> list[str]:
        """Check the custom fields exist (they ship in the package; the REST API cannot
        create them). Raises ``FatalConnectorError`` naming what is missing."""
        wanted = {"Contact": [self.tags_field], "Lead": [self.key_field, self.lead_contact_field],
                  "Task": [self.key_field], "Event": [self.key_field]}
        missing = []
        for sobject, names in wanted.items():
            fields = {f["name"]: f for f in self.http.get(f"sobjects/{sobject}/describe")["fields"]}
            missing += [f"{sobject}.{n}" for n in names if n not in fields]
            key = fields.get(self.key_field)
            if key is not None and not key.get("externalId"):
                missing.append(f"{sobject}.{self.key_field} (not an External ID)")
        if missing:
            raise FatalConnectorError(f"salesforce org lacks custom fields: {', '.join(missing)}")
        return []


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v not in (None, "")}


def _errors(body: Any) -> str:
    items = body if isinstance(body, list) else [body]
    return "; ".join(f"{e.get('errorCode')}: {e.get('message')}" for e in items
                     if isinstance(e, dict))

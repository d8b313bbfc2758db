"""HubSpot: CRM v3 objects, v4 associations, the search API and webhooks v3.

Contacts are listed with ``after`` cursors for the initial sync, then searched on
``lastmodifieddate`` (the contact's spelling of ``hs_lastmodifieddate``) with an overlap
window. Every record the plugin writes carries the unique property ``crm_journeys_key``:
activities are upserted by it (``batch/upsert`` with ``idProperty``), leads, which HubSpot
only creates together with their contact association, are created with it so a repeat
is refused as a conflict and found again. Tags live in one ``;``-separated property.

A public app has one webhook target URL for every account (portal) that installed it:
``verify_signature``, ``read_events``, ``events_by_portal`` and ``webhook_hints`` are
what the app-level endpoint (``web.hooks.crm``) needs without a tenant's connector, and
``token_metadata`` names the portal an OAuth token belongs to at install.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, time, timedelta
from typing import Any, ClassVar
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo

import requests

from crm_journeys.connectors.base import (
    ActivitySpec,
    CanonicalContact,
    Connector,
    EmailSpec,
    InboundRequest,
    LeadSpec,
    Owner,
    WebhookHint,
    WriteResult,
)
from crm_journeys.connectors.cursor import Chunk, SyncState, WindowedSync
from crm_journeys.connectors.explain import HostHints, explaining
from crm_journeys.connectors.http import (
    Auth,
    Call,
    CursorPaginator,
    HttpClient,
    client_options,
    default_message,
)
from crm_journeys.connectors.mapping import (
    RewritesTags,
    canonical,
    iso_z,
    opt_out,
    opted_out,
    parse_time,
    signup_of,
    split_tags,
    to_ms,
)
from crm_journeys.connectors.oauth import hubspot_app, keeper_for
from crm_journeys.errors import FatalConnectorError, WebhookRejected

FIELDS = {"email": "email", "first_name": "firstname", "last_name": "lastname",
          "phone": "phone", "owner": "hubspot_owner_id", "time_zone": "hs_timezone",
          "language": "hs_language", "birthday": "date_of_birth"}
ACTIVITY_TYPES = {"task": "tasks", "phone_call": "calls", "appointment": "meetings"}
OPT_OUT = "email_opt_out"  # canonical; HubSpot's hs_email_optout is read-only
RESUBSCRIBE_KEPT = ("not re-subscribed: HubSpot keeps the opt-out from all email until the contact "
                    "re-subscribes through HubSpot's own preferences page")
LEAD_TO_CONTACT = 578  # HUBSPOT_DEFINED "lead to primary contact"
SIGNATURE_WINDOW_MS = 5 * 60 * 1000
HINTS = HostHints(
    "HubSpot",
    unauthorized="the access token is invalid or expired and could not be renewed; reconnect "
                 "the account with `crm-journeys install hubspot` (or paste a new private-app token)",
    forbidden="the app's token lacks a scope this call needs (see the host's message); add it "
              "to the app or private app in HubSpot, then reconnect",
    # {"error": "PROPERTY_DOESNT_EXIST", "message": "Property \"x\" does not exist"}
    unknown_field=(r'Property \\*"([^"\\]+)\\*" does not exist',))
# HubSpot decodes these in the URI before signing (webhooks v3 docs).
_URI_DECODE = ("%3A", "%2F", "%3F", "%40", "%21", "%24", "%27", "%28", "%29", "%2A",
               "%2C", "%3B")


def hubspot_message(response: requests.Response) -> str:
    """HubSpot's message, plus the scopes a ``MISSING_SCOPES`` answer names in its
    ``errors[].context`` (the message itself only says "not all required scopes")."""
    text = default_message(response)
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return text
    scopes = [scope for e in errors if isinstance(e, dict)
              for key in ("requiredGranularScopes", "requiredScopes")
              for scope in (e.get("context") or {}).get(key) or []]
    return f"{text} (needs: {', '.join(scopes)})" if scopes else text


def daily_budget_rule(time_zone: str) -> Any:
    """HubSpot's daily limit answer is a 429 whose ``policyName`` is ``DAILY``; it resets
    at midnight in the account's time zone."""

    def rule(response: requests.Response, now: datetime) -> datetime | None:
        if response.status_code != 429:
            return None
        try:
            policy = response.json().get("policyName")
        except ValueError:
            return None
        if policy != "DAILY":
            return None
        local = now.astimezone(ZoneInfo(time_zone))
        midnight = datetime.combine(local.date() + timedelta(days=1), time(), local.tzinfo)
        return midnight.astimezone(now.tzinfo)

    return rule


class HubSpotConnector(RewritesTags, WindowedSync, Connector):
    """A HubSpot account (portal) reached with an OAuth or private-app access token."""

    name = "hubspot"
    label = "HubSpot"
    capabilities = frozenset({"webhooks", "signed_webhooks", "phone_call", "appointment",
                              "log_email", "owners"})
    key_property: ClassVar[str] = "crm_journeys_key"
    modified_property: ClassVar[str] = "lastmodifieddate"
    search_cap: ClassVar[int] = 10_000  # HubSpot returns at most this many hits per query

    def __init__(self, settings: dict[str, Any] | None = None,
                 credentials: dict[str, Any] | None = None, **context: Any):
        super().__init__(settings, credentials, **context)
        self.tags_property = self.settings.get("tags_property", "crm_journeys_tags")
        self.custom_fields = list(self.settings.get("custom_fields", []))
        token = self.credentials["access_token"]
        self.http = HttpClient(
            self.settings.get("base_url", "https://api.hubapi.com"),
            account=f"hubspot:{self.settings.get('portal_id') or hashlib.sha256(token.encode()).hexdigest()[:12]}",
            auth=Auth.bearer(token, self._refresher()),
            budget_rule=daily_budget_rule(self.settings.get("time_zone", "UTC")),
            message_of=explaining(hubspot_message, HINTS), rate=self.settings.get("requests_per_second", 9.0), burst=10,
            secrets=[self.credentials.get("client_secret"), self.credentials.get("refresh_token")],
            **client_options(context))

    @property
    def contact_properties(self) -> list[str]:
        return [*FIELDS.values(), self.tags_property, "createdate", self.modified_property,
                "hs_email_optout", *self.custom_fields]

    def _refresher(self) -> Any:
        """Renews the access token after a 401: the runtime's hook, else OAuth refresh."""
        api = self.settings.get("base_url", "https://api.hubapi.com")
        app = hubspot_app(self.settings.get("oauth_api_url", api))
        return self.context.get("refresh_access_token") or keeper_for(
            app, self.credentials, self.context)

    # --- reading --------------------------------------------------------------------
    def full_page(self, token: Any, page_size: int) -> Chunk:
        call = Call("GET", "/crm/v3/objects/contacts",
                    params={"properties": ",".join(self.contact_properties)})
        page = self.http.page(call, CursorPaginator(), token, min(page_size, 100))
        return Chunk([self._contact(r) for r in page.items], page.next)

    def changes_page(self, since: datetime, token: Any, page_size: int, state: SyncState) -> Chunk:
        size = min(page_size, 200)
        call = Call("POST", "/crm/v3/objects/contacts/search", json={
            "filterGroups": [{"filters": [{"propertyName": self.modified_property,
                                           "operator": "GTE", "value": str(to_ms(since))}]}],
            "sorts": [self.modified_property], "properties": self.contact_properties,
            "limit": size, "after": "0"})
        page = self.http.page(call, CursorPaginator(in_body=True), token, size, idempotent=True)
        contacts = [self._contact(r) for r in page.items]
        if page.next is not None and int(page.next) + size > self.search_cap and contacts:
            # Past HubSpot's 10,000-hit window: restart the query at the newest time read;
            # the cursor's version de-duplication absorbs the records read twice.
            state.since = max(c.modified_at for c in contacts if c.modified_at).isoformat()
            return Chunk(contacts, "0", page.total)
        return Chunk(contacts, page.next, page.total)

    def fetch_contact(self, external_id: str) -> CanonicalContact | None:
        record = self.http.get(f"/crm/v3/objects/contacts/{external_id}", allow_404=True,
                               params={"properties": ",".join(self.contact_properties)})
        return self._contact(record) if record else None

    def _contact(self, record: dict[str, Any]) -> CanonicalContact:
        props = record.get("properties") or {}
        return canonical(
            str(record["id"]), {name: props.get(prop) for name, prop in FIELDS.items()},
            created_at=parse_time(record.get("createdAt") or props.get("createdate")),
            signup_date=signup_of(props.get("createdate") or record.get("createdAt")),
            modified_at=parse_time(props.get(self.modified_property) or record.get("updatedAt")),
            version=props.get(self.modified_property) or record.get("updatedAt"),
            tags=split_tags(props.get(self.tags_property)),
            fields={**{f: props.get(f) for f in self.custom_fields if props.get(f) is not None},
                    **opt_out(props.get("hs_email_optout"))},
            deleted=bool(record.get("archived")))

    # --- webhooks -------------------------------------------------------------------
    def verify_webhook(self, request: InboundRequest) -> None:
        verify_signature(request, self.credentials.get("client_secret") or "",
                         self.clock.now(), self.settings.get("webhook_url"))

    def parse_webhook(self, request: InboundRequest) -> list[WebhookHint]:
        """The events of this account: the app's secret signs every account's events, so
        another account's (a per-app URL pointed here) are dropped, never stored."""
        events = read_events(request.body)
        portal = str(self.settings.get("portal_id") or "")
        if portal:
            events = [e for e in events if str(e.get("portalId") or portal) == portal]
        return webhook_hints(events, self.settings.get("app_id"))

    # --- writing --------------------------------------------------------------------
    def create_lead(self, contact_ref: str, spec: LeadSpec, idempotency_key: str) -> WriteResult:
        existing = self._find("leads", idempotency_key)
        if existing:
            return WriteResult(existing, created=False)
        props = _clean({"hs_lead_name": spec.title, "hubspot_owner_id": spec.owner,
                        self.key_property: idempotency_key})
        body = {"properties": props, "associations": [{
            "to": {"id": contact_ref}, "types": [{"associationCategory": "HUBSPOT_DEFINED",
                                                   "associationTypeId": LEAD_TO_CONTACT}]}]}
        try:
            # Idempotent thanks to the unique key: a repeat is refused with 409, not doubled.
            record = self.http.post("/crm/v3/objects/leads", json=body, idempotent=True)
        except FatalConnectorError as exc:
            found = self._find("leads", idempotency_key) if exc.status == 409 else None
            if not found:
                raise
            return WriteResult(found, created=False)
        return WriteResult(str(record["id"]), created=True)

    def create_activity(self, contact_ref: str, spec: ActivitySpec,
                        idempotency_key: str) -> WriteResult:
        start = spec.due_at
        end = start + timedelta(minutes=spec.duration_minutes)
        props: dict[str, Any] = {
            "task": {"hs_task_subject": spec.subject, "hs_task_body": spec.description,
                     "hs_task_status": "NOT_STARTED", "hs_task_type": "TODO"},
            "phone_call": {"hs_call_title": spec.subject, "hs_call_body": spec.description,
                           "hs_call_status": "SCHEDULED", "hs_call_direction": "OUTBOUND"},
            "appointment": {"hs_meeting_title": spec.subject, "hs_meeting_body": spec.description,
                            "hs_meeting_start_time": iso_z(start),
                            "hs_meeting_end_time": iso_z(end)},
        }[spec.kind]
        props.update(hs_timestamp=iso_z(start), hubspot_owner_id=spec.owner)
        return self._upsert_linked(ACTIVITY_TYPES[spec.kind], contact_ref, props, idempotency_key)

    def log_email(self, contact_ref: str, email: EmailSpec, idempotency_key: str) -> WriteResult:
        props = {"hs_email_subject": email.subject, "hs_email_html": email.html,
                 "hs_email_text": email.text, "hs_email_direction": "EMAIL",
                 "hs_email_status": "SENT", "hs_timestamp": iso_z(self.clock.now())}
        return self._upsert_linked("emails", contact_ref, props, idempotency_key)

    def update_fields(self, contact_ref: str, values: dict[str, Any],
                      idempotency_key: str) -> WriteResult:
        """Properties by PATCH; ``email_opt_out`` through the communication preferences API,
        since ``hs_email_optout`` is read-only in HubSpot."""
        values = dict(values)
        notes = []
        if OPT_OUT in values:
            notes.append(self._write_opt_out(contact_ref, values.pop(OPT_OUT)))
        if values:
            props = {FIELDS.get(name, name): "" if v is None else str(v) for name, v in values.items()}
            self.http.patch(f"/crm/v3/objects/contacts/{contact_ref}", json={"properties": props})
            notes.insert(0, f"updated {sorted(values)}")
        return WriteResult(contact_ref, created=False, detail="; ".join(notes))

    def _write_opt_out(self, contact_ref: str, value: Any) -> str:
        """True: unsubscribe the contact's address from all email (v4, idempotent in effect:
        a repeat leaves it unsubscribed). False: nothing to call, HubSpot re-subscribes a
        contact who opted out of all email only with a legal basis the contact gives it, so
        the answer says so and the write is done rather than retried."""
        if not opted_out(value):
            return RESUBSCRIBE_KEPT
        email = self._email_of(contact_ref)
        self.http.post(f"/communication-preferences/v4/statuses/{quote(email, safe='@')}/unsubscribe-all",
                       params={"channel": "EMAIL"}, idempotent=True)
        return f"unsubscribed {email} from all email in HubSpot"

    def _email_of(self, contact_ref: str) -> str:
        """The subscriber id the preferences API takes is the address: the ref may be one
        already, else the contact's ``email`` is read."""
        if "@" in contact_ref:
            return contact_ref
        record = self.http.get(f"/crm/v3/objects/contacts/{contact_ref}", params={"properties": "email"})
        email = (record.get("properties") or {}).get("email")
        if not email:
            raise FatalConnectorError(f"HubSpot contact {contact_ref} has no email address to unsubscribe")
        return str(email)

    def _read_tags(self, contact_ref: str) -> object:
        record = self.http.get(f"/crm/v3/objects/contacts/{contact_ref}", params={"properties": self.tags_property})
        return record["properties"].get(self.tags_property)

    def _write_tags(self, contact_ref: str, value: str | None) -> None:
        self.http.patch(f"/crm/v3/objects/contacts/{contact_ref}",
                        json={"properties": {self.tags_property: value or ""}})

    def _find(self, object_type: str, key: str) -> str | None:
        record = self.http.get(f"/crm/v3/objects/{object_type}/{quote(key, safe='')}", allow_404=True,
                               params={"idProperty": self.key_property})
        return str(record["id"]) if record else None

    def _upsert_linked(self, object_type: str, contact_ref: str, props: dict[str, Any],
                       key: str) -> WriteResult:
        """Look up by key first (a repeat must not reset what a salesperson changed), else
        upsert by key (safe under concurrent retries); then link to the contact (a PUT)."""
        found = self._find(object_type, key)
        record_id, created = found or "", found is None
        if found is None:
            body = {"inputs": [{"id": key, "idProperty": self.key_property,
                                "properties": _clean(props)}]}
            result = self.http.post(f"/crm/v3/objects/{object_type}/batch/upsert", json=body,
                                    idempotent=True)["results"][0]
            record_id, created = str(result["id"]), bool(result.get("new", True))
        self.http.put(f"/crm/v4/objects/{object_type}/{record_id}/associations/default/"
                      f"contacts/{contact_ref}")
        return WriteResult(record_id, created=created)

    # --- installation ---------------------------------------------------------------
    def ensure_schema(self) -> list[str]:
        created = []
        wanted = [("contacts", self.tags_property, False)] + [
            (t, self.key_property, True)
            for t in ("leads", "tasks", "calls", "meetings", "emails")]
        for object_type, name, unique in wanted:
            if self.http.get(f"/crm/v3/properties/{object_type}/{name}", allow_404=True):
                continue
            group = "crm_journeys"
            if not self.http.get(f"/crm/v3/properties/{object_type}/groups/{group}",
                                 allow_404=True):
                self.http.post(f"/crm/v3/properties/{object_type}/groups",
                               json={"name": group, "label": "Customer journeys"})
            self.http.post(f"/crm/v3/properties/{object_type}", json={
                "name": name, "label": name.replace("_", " ").capitalize(), "type": "string",
                "fieldType": "text", "groupName": group, "hasUniqueValue": unique})
            created.append(f"{object_type}.{name}")
        return created

    def list_owners(self) -> list[Owner]:
        """Active owners (``GET /crm/v3/owners``, 100 a page): the ``id`` is what
        ``hubspot_owner_id`` takes; ``userId`` is a different number HubSpot refuses there."""
        call = Call("GET", "/crm/v3/owners", params={"archived": "false"})
        return [Owner(str(o["id"]), _owner_name(o), o.get("email") or None)
                for o in self.http.paginate(call, CursorPaginator(), page_size=100)]

    def picker_values(self, picker: str) -> list[str]:
        if picker == "fields":
            return sorted([*FIELDS, "signup_date"]) + self.custom_fields
        return []


def _owner_name(owner: dict[str, Any]) -> str:
    name = " ".join(p for p in (owner.get("firstName"), owner.get("lastName")) if p)
    return name or owner.get("email") or str(owner["id"])


# --- webhooks v3, with or without a tenant ------------------------------------------------
def verify_signature(request: InboundRequest, secret: str, now: datetime,
                     public_url: str | None = None) -> None:
    """Check ``X-HubSpot-Signature-v3`` (HMAC-SHA256 with the app's client secret over
    method, URI, body and timestamp) and the 5-minute window.

    Args:
        public_url: the URL HubSpot posts to when it differs from ``request.url`` (a
            proxy in front); HubSpot signs the URL it called.

    Raises:
        WebhookRejected: missing headers, a stale timestamp or a wrong signature.
    """
    timestamp = request.header("X-HubSpot-Request-Timestamp") or ""
    signature = request.header("X-HubSpot-Signature-v3") or ""
    if not timestamp.isdigit() or not signature:
        raise WebhookRejected("missing X-HubSpot-Signature-v3 or its timestamp")
    if abs(to_ms(now) - int(timestamp)) > SIGNATURE_WINDOW_MS:
        raise WebhookRejected("HubSpot webhook timestamp outside the 5-minute window")
    uri = public_url or request.url
    for encoded in _URI_DECODE:
        uri = uri.replace(encoded, unquote(encoded)).replace(encoded.lower(), unquote(encoded))
    source = f"{request.method.upper()}{uri}".encode() + request.body + timestamp.encode()
    expected = base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest())
    if not secret or not hmac.compare_digest(expected, signature.encode(errors="replace")):
        raise WebhookRejected("X-HubSpot-Signature-v3 does not match")


def read_events(body: bytes) -> list[dict[str, Any]]:
    """The events of one delivery: HubSpot posts a JSON array (up to 100 events)."""
    try:
        events = json.loads(body)
    except ValueError as exc:
        raise WebhookRejected(f"webhook body is not JSON: {exc}") from None
    events = events if isinstance(events, list) else [events]
    if not all(isinstance(event, dict) for event in events):
        raise WebhookRejected("webhook body is not a list of events")
    return events


def events_by_portal(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Split one delivery by account (``portalId``); events without one go under ``""``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        out.setdefault(str(event.get("portalId") or ""), []).append(event)
    return out


def webhook_hints(events: list[dict[str, Any]], app_id: Any = None) -> list[WebhookHint]:
    """Events as hints; a change our own app made (``changeSource`` ``INTEGRATION`` from
    ``app_id``) is an echo."""
    app = str(app_id or "")
    hints = []
    for event in events:
        object_type, _, change = str(event.get("subscriptionType", "")).partition(".")
        source = str(event.get("sourceId", ""))
        hints.append(WebhookHint(
            event_id=str(event["eventId"]), object_type=object_type,
            object_id=str(event["objectId"]),
            change={"creation": "created", "deletion": "deleted",
                    "propertyChange": "property_change"}.get(change, change),
            occurred_at=parse_time(event.get("occurredAt")),
            echo=bool(app) and event.get("changeSource") == "INTEGRATION"
            and source in (app, f"appId:{app}"),
            properties=({event["propertyName"]: event.get("propertyValue")}
                        if "propertyName" in event else {})))
    return hints


def token_metadata(api_url: str, access_token: str, **context: Any) -> dict[str, Any]:
    """What HubSpot says about an OAuth access token (``GET /oauth/v1/access-tokens/{token}``):
    ``hub_id`` (the portal), ``app_id``, ``user``, ``scopes``."""
    http = HttpClient(api_url, account=f"oauth:{api_url}", secrets=[access_token],
                      **client_options(context))
    return dict(http.get(f"/oauth/v1/access-tokens/{quote(access_token, safe='')}") or {})


def _clean(props: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in props.items() if v not in (None, "")}

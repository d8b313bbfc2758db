"""A stateful fake of HubSpot's CRM v3/v4 APIs, checked against HubSpot's published specs.

Objects (contacts, leads, tasks, calls, meetings, emails) with property definitions,
unique properties, ``after`` cursor paging, the search API (200 per page, 10,000 results
per query), batch upsert by ``idProperty``, v4 default associations, HubSpot's error
bodies, its 429s (``policyName`` ``TEN_SECONDLY_ROLLING`` or ``DAILY``) and webhooks v3
signed with ``X-HubSpot-Signature-v3``.

One ``FakeHubSpot`` is one account (portal). ``FakeHubSpotAuth`` is HubSpot's OAuth side
for one or more of them: the installing user picks the account, the token works on that
account's API only and its metadata (``GET /oauth/v1/access-tokens/{token}``) names it.
``deliver`` posts one signed batch the way the app's webhook subscription does, with
events of any accounts in it.

Documented behaviour this fake follows beyond the published specs (checked only against
the documentation, not a live portal; docs/connectors.md lists the differences):

- Error bodies ``{"status": "error", "message", "correlationId", "category"}``; 401
  ``INVALID_AUTHENTICATION``, 403 ``MISSING_SCOPES`` naming the required scopes, 404
  ``OBJECT_NOT_FOUND``, 409 ``CONFLICT``, 429 ``RATE_LIMIT`` with ``policyName``
  (https://developers.hubspot.com/docs/api/error-handling).
- A write naming a property the object does not have is a 400 ``VALIDATION_ERROR`` whose
  message lists ``{"error": "PROPERTY_DOESNT_EXIST", "name": ...}`` per property
  (``READ_ONLY_VALUE`` for one HubSpot sets itself); an owner id that is not an owner is
  ``INVALID_OWNER_ID`` (same page).
- Contacts are unique by email: a second one is a 409 ``CONFLICT`` "Contact already
  exists. Existing ID: <id>" (the answer integrations quote, e.g. HubSpot/hubspot-api-nodejs#545).
- Owners: ``GET /crm/v3/owners`` (``limit`` up to 500, ``after``, ``email``, ``archived``),
  scope ``crm.objects.owners.read``; ``id`` is what ``hubspot_owner_id`` takes, ``userId``
  is refused there (https://developers.hubspot.com/docs/api-reference/crm-crm-owners-v3/guide).
- Communication preferences v4, unsubscribe from all email:
  ``POST /communication-preferences/v4/statuses/{subscriberIdString}/unsubscribe-all?channel=EMAIL``
  (400 without ``channel``; a repeat leaves the address unsubscribed) and its ``GET``,
  whose ``results`` is empty for an address that has not opted out of all email
  (https://developers.hubspot.com/docs/api-reference/communication-preferences-subscriptions-v4/subscription-status/get-communication-preferences-v4-statuses-subscriberIdString-unsubscribe-all).
  Not in the shared specs: its endpoints check their own parameters.
- Paging: object lists at most 100 per page with ``paging.next.after``; search 200 per
  page and 10,000 results per query (https://developers.hubspot.com/docs/api/crm/search).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import requests
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from tests.fakes.base import FakeCrm, HostError, json_response
from tests.fakes.oauth import FakeAuthorizationServer
from tests.fakes.spec import SpecChecker

APP_ID = 54321
PORTAL_ID = 62515
CLIENT_SECRET = "hubspot-client-secret-7c1f"
KEY = "crm_journeys_key"
TAGS = "crm_journeys_tags"

PROPS = {
    "contacts": "email firstname lastname phone hubspot_owner_id hs_timezone hs_language "
                "date_of_birth company createdate lastmodifieddate hs_object_id hs_email_optout",
    "leads": "hs_lead_name hs_lead_type hs_lead_label hubspot_owner_id createdate "
             "hs_lastmodifieddate hs_object_id",
    "tasks": "hs_task_subject hs_task_body hs_task_status hs_task_priority hs_task_type "
             "hs_timestamp hubspot_owner_id hs_lastmodifieddate hs_object_id",
    "calls": "hs_call_title hs_call_body hs_call_status hs_call_direction hs_timestamp "
             "hubspot_owner_id hs_lastmodifieddate hs_object_id",
    "meetings": "hs_meeting_title hs_meeting_body hs_meeting_start_time hs_meeting_end_time "
                "hs_timestamp hubspot_owner_id hs_lastmodifieddate hs_object_id",
    "emails": "hs_email_subject hs_email_html hs_email_text hs_email_direction hs_email_status "
              "hs_timestamp hubspot_owner_id hs_lastmodifieddate hs_object_id",
}
KINDS = {"lead": "leads", "task": "tasks", "phone_call": "calls", "appointment": "meetings",
         "email": "emails"}
TITLES = {"leads": "hs_lead_name", "tasks": "hs_task_subject", "calls": "hs_call_title",
          "meetings": "hs_meeting_title", "emails": "hs_email_subject"}
CANONICAL = {"email": "email", "first_name": "firstname", "last_name": "lastname",
             "phone": "phone"}
READ_ONLY = {"createdate", "lastmodifieddate", "hs_lastmodifieddate", "hs_object_id",
             "hs_email_optout"}  # set through the communication preferences API only
LEAD_TO_CONTACT = 578
UNSUB_ALL = "/communication-preferences/v4/statuses"
CHANNELS = frozenset({"EMAIL", "SMS", "WHATSAPP"})
OWNERS_SCOPE = "crm.objects.owners.read"
CONSENT_SCOPE = "communication_preferences.read_write"  # the subscription preferences API
SCOPES = frozenset({"crm.objects.contacts.read", "crm.objects.contacts.write",
                    "crm.schemas.contacts.write", OWNERS_SCOPE, CONSENT_SCOPE})
# Two salespeople and a deactivated one, as GET /crm/v3/owners words them.
OWNERS = [
    {"id": "41629779", "email": "sam@sales.example", "firstName": "Sam", "lastName": "Seller",
     "userId": 9586504, "archived": False},
    {"id": "41629780", "email": "kim@sales.example", "firstName": "Kim", "lastName": "Closer",
     "userId": 9586505, "archived": False},
    {"id": "41629781", "email": "gone@sales.example", "firstName": "Former", "lastName": "Rep",
     "userId": 9586506, "archived": True},
]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """HubSpot's v3 signature: it decodes a fixed set of escapes in the URI, then signs."""
    for escape, char in (("%3A", ":"), ("%2F", "/"), ("%3F", "?"), ("%40", "@"), ("%21", "!"),
                         ("%24", "$"), ("%27", "'"), ("%28", "("), ("%29", ")"), ("%2A", "*"),
                         ("%2C", ","), ("%3B", ";")):
        uri = uri.replace(escape, char)
    source = f"{method}{uri}{body.decode()}{timestamp}".encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


class FakeHubSpot(FakeCrm):
    name = "hubspot"
    token = "pat-na1-11111111-2222-3333-4444-555555555555"

    def __init__(self, clock: Any = None, portal_id: int = PORTAL_ID):
        super().__init__(clock)
        self.portal_id = portal_id
        self.spec = SpecChecker("hubspot/*.json")
        self.props: dict[str, dict[str, dict[str, Any]]] = {
            t: {n: {"name": n, "hasUniqueValue": False} for n in names.split()}
            for t, names in PROPS.items()}
        self.groups = {t: {f"{t[:-1]}information"} for t in PROPS}
        self.objects: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in PROPS}
        self.associations: set[tuple[str, str, str, str]] = set()
        self.event_ids = iter(range(9001, 10**9))
        self.owners = [dict(o) for o in OWNERS]
        self.scopes = set(SCOPES)  # what the token was granted; tests take some away
        self.opted_out: dict[tuple[str, str], str] = {}  # (address, channel) -> when

    def rules(self) -> list[Rule]:
        obj = "/crm/v3/objects/<otype>"
        return [
            Rule(obj, endpoint=self.list_objects, methods=["GET"]),
            Rule(obj, endpoint=self.create_object, methods=["POST"]),
            Rule(f"{obj}/search", endpoint=self.search, methods=["POST"]),
            Rule(f"{obj}/batch/upsert", endpoint=self.batch_upsert, methods=["POST"]),
            Rule(f"{obj}/<oid>", endpoint=self.get_object, methods=["GET"]),
            Rule(f"{obj}/<oid>", endpoint=self.update_object, methods=["PATCH"]),
            Rule(f"{obj}/<oid>", endpoint=self.archive_object, methods=["DELETE"]),
            Rule("/crm/v4/objects/<otype>/<oid>/associations/default/<totype>/<toid>",
                 endpoint=self.associate, methods=["PUT"]),
            Rule("/crm/v3/properties/<otype>", endpoint=self.create_property, methods=["POST"]),
            Rule("/crm/v3/properties/<otype>/groups", endpoint=self.create_group,
                 methods=["POST"]),
            Rule("/crm/v3/properties/<otype>/groups/<name>", endpoint=self.get_group,
                 methods=["GET"]),
            Rule("/crm/v3/properties/<otype>/<name>", endpoint=self.get_property,
                 methods=["GET"]),
            Rule("/crm/v3/owners", endpoint=self.list_owners, methods=["GET"]),
            Rule("/crm/v3/owners/<owner_id>", endpoint=self.get_owner, methods=["GET"]),
            Rule(f"{UNSUB_ALL}/<subscriber>/unsubscribe-all", endpoint=self.unsubscribe_all,
                 methods=["POST"]),
            Rule(f"{UNSUB_ALL}/<subscriber>/unsubscribe-all", endpoint=self.unsubscribed_status,
                 methods=["GET"]),
        ]

    def validate(self, request: Request) -> None:
        """The shared specs do not describe the owners API nor communication preferences:
        their endpoints check their own parameters; everything else goes through the spec."""
        if not request.path.startswith(("/crm/v3/owners", UNSUB_ALL)):
            super().validate(request)

    # --- HubSpot's answers ----------------------------------------------------------
    def render_error(self, error: HostError) -> Response:
        if error.status == 401:
            error = HostError(401, "Authentication credentials not found. This API supports "
                                   "OAuth 2.0 authentication and you can find more details at "
                                   "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                              "INVALID_AUTHENTICATION")
        category = error.code or "VALIDATION_ERROR"
        return json_response({"status": "error", "message": error.message,
                              "correlationId": str(uuid.uuid4()), "category": category,
                              **error.extra}, error.status)

    def budget_response(self) -> Response:
        return json_response({"status": "error", "message": "You have reached your daily limit.",
                              "errorType": "RATE_LIMIT", "correlationId": str(uuid.uuid4()),
                              "policyName": "DAILY"}, 429)

    def _type(self, otype: str) -> str:
        if otype not in self.objects:
            raise HostError(400, f"Unable to infer object type from: {otype}", "VALIDATION_ERROR")
        return otype

    def _out(self, otype: str, record: dict[str, Any], wanted: list[str] | None) -> dict:
        props = record["properties"]
        keys = wanted or ["createdate", "hs_object_id", "lastmodifieddate"]
        return {"id": record["id"], "archived": record["archived"],
                "createdAt": record["createdAt"], "updatedAt": record["updatedAt"],
                "properties": {k: props[k] for k in keys if k in props}}

    @staticmethod
    def _wanted(request: Request) -> list[str] | None:
        raw = request.args.getlist("properties")
        names = [n for item in raw for n in item.split(",") if n]
        return names or None

    def _live(self, otype: str, oid: str) -> dict[str, Any]:
        record = self.objects[otype].get(oid)
        if record is None or record["archived"]:
            raise HostError(404, "Object not found.  objectId are usually numeric.",
                            "OBJECT_NOT_FOUND")
        return record

    def _check_props(self, otype: str, values: dict[str, Any], existing: str | None) -> None:
        problems = []
        for name, value in values.items():
            if name not in self.props[otype]:
                problems.append({"isValid": False, "message": f'Property "{name}" does not exist',
                                 "error": "PROPERTY_DOESNT_EXIST", "name": name})
            elif name in READ_ONLY:
                problems.append({"isValid": False, "message": f"{name} is a read only property; "
                                                              "its value cannot be set.",
                                 "error": "READ_ONLY_VALUE", "name": name})
            elif name == "email" and value and "@" not in str(value):
                problems.append({"isValid": False, "message": f"Email address {value} is invalid",
                                 "error": "INVALID_EMAIL", "name": name})
            elif name == "hubspot_owner_id" and value and str(value) not in self._owner_ids():
                problems.append({"isValid": False, "message": f"{value} is not a valid owner id",
                                 "error": "INVALID_OWNER_ID", "name": name})
        if problems:
            raise HostError(400, f"Property values were not valid: {json.dumps(problems)}")
        if otype == "contacts" and values.get("email"):
            for other in self.objects["contacts"].values():
                if (other["id"] != existing and not other["archived"]
                        and str(other["properties"].get("email", "")).lower()
                        == str(values["email"]).lower()):
                    raise HostError(409, f"Contact already exists. Existing ID: {other['id']}",
                                    "CONFLICT")
        for name, value in values.items():
            if self.props[otype][name]["hasUniqueValue"] and value:
                for other in self.objects[otype].values():
                    if other["id"] != existing and other["properties"].get(name) == value:
                        raise HostError(409, f"A {otype[:-1]} with {name} {value} already exists "
                                             f"(id {other['id']})", "CONFLICT")

    def _store(self, otype: str, values: dict[str, Any], oid: str | None = None,
               stamp: datetime | None = None) -> dict[str, Any]:
        now = stamp or self.now()
        record = self.objects[otype].get(oid) if oid else None
        if record is None:
            oid = str(self.next_id())
            record = {"id": oid, "archived": False, "createdAt": iso(now),
                      "properties": {"createdate": iso(now), "hs_object_id": oid}}
            self.objects[otype][oid] = record
        record["properties"].update({k: ("" if v is None else str(v)) for k, v in values.items()})
        record["updatedAt"] = iso(now)
        mod = "lastmodifieddate" if otype == "contacts" else "hs_lastmodifieddate"
        record["properties"][mod] = iso(now)
        return record

    def _owner_ids(self) -> set[str]:
        return {o["id"] for o in self.owners if not o["archived"]}

    def _owner_out(self, owner: dict[str, Any]) -> dict[str, Any]:
        now = iso(self.now())
        return {**owner, "type": "PERSON", "userIdIncludingInactive": owner["userId"],
                "createdAt": now, "updatedAt": now, "teams": []}

    def _need_scope(self, scope: str) -> None:
        if scope not in self.scopes:
            raise HostError(403, "This app hasn't been granted all required scopes to make this "
                                 "call. Read more about required scopes here: "
                                 "https://developers.hubspot.com/scopes.", "MISSING_SCOPES",
                            errors=[{"message": "One or more of the following scopes are "
                                                "required.",
                                     "context": {"requiredGranularScopes": [scope]}}])

    # --- endpoints ------------------------------------------------------------------
    def list_owners(self, request: Request) -> Response:
        self._need_scope(OWNERS_SCOPE)
        try:
            limit = int(request.args.get("limit", 100))
            start = int(request.args.get("after") or 0)
        except ValueError:
            raise HostError(400, "limit and after must be integers") from None
        if not 1 <= limit <= 500:
            raise HostError(400, "limit must be between 1 and 500")
        archived = request.args.get("archived", "false") == "true"
        email = request.args.get("email")
        rows = [o for o in self.owners if o["archived"] == archived
                and (email is None or o["email"].lower() == email.lower())]
        body: dict[str, Any] = {"results": [self._owner_out(o) for o in rows[start:start + limit]]}
        if start + limit < len(rows):
            body["paging"] = {"next": {"after": str(start + limit)}}
        return json_response(body)

    def get_owner(self, request: Request, owner_id: str) -> Response:
        self._need_scope(OWNERS_SCOPE)
        found = next((o for o in self.owners if o["id"] == owner_id), None)
        if found is None:
            raise HostError(404, f"Owner {owner_id} not found", "OBJECT_NOT_FOUND")
        return json_response(self._owner_out(found))

    def _channel(self, request: Request) -> str:
        channel = request.args.get("channel")
        if not channel:
            raise HostError(400, "Required query parameter 'channel' is missing", "VALIDATION_ERROR")
        if channel not in CHANNELS:
            raise HostError(400, f"channel {channel!r} is not one of {sorted(CHANNELS)}", "VALIDATION_ERROR")
        return channel

    def _wide_statuses(self, subscriber: str, channel: str) -> list[dict[str, Any]]:
        when = self.opted_out.get((subscriber.lower(), channel))
        return [] if when is None else [{"subscriberIdString": subscriber, "channel": channel,
                                         "status": "UNSUBSCRIBED", "timestamp": when,
                                         "wideStatusType": "PORTAL_WIDE"}]

    def unsubscribe_all(self, request: Request, subscriber: str) -> Response:
        """The address leaves every subscription of the channel (and, for email, its contact
        gets ``hs_email_optout``); a repeat changes nothing."""
        self._need_scope(CONSENT_SCOPE)
        channel = self._channel(request)
        started = iso(self.now())
        if (subscriber.lower(), channel) not in self.opted_out:
            self.opted_out[(subscriber.lower(), channel)] = started
            for record in self.objects["contacts"].values():  # HubSpot sets its read-only flag
                if channel == "EMAIL" and str(record["properties"].get("email", "")).lower() == subscriber.lower():
                    self._store("contacts", {"hs_email_optout": "true"}, record["id"])
        return json_response({"status": "COMPLETE", "startedAt": started, "completedAt": iso(self.now()),
                              "results": [dict(s, source="Public API") for s in self._wide_statuses(subscriber, channel)]})

    def unsubscribed_status(self, request: Request, subscriber: str) -> Response:
        self._need_scope(CONSENT_SCOPE)
        channel = request.args.get("channel") or "EMAIL"
        now = iso(self.now())
        return json_response({"status": "COMPLETE", "startedAt": now, "completedAt": now,
                              "results": self._wide_statuses(subscriber, channel)})

    def unsubscribed_from_all(self, address: str) -> bool:
        """What HubSpot's preferences say of the address (email channel)."""
        return (address.lower(), "EMAIL") in self.opted_out

    def list_objects(self, request: Request, otype: str) -> Response:
        otype = self._type(otype)
        limit = min(int(request.args.get("limit", 10)), 100)
        start = int(request.args.get("after", 0) or 0)
        live = sorted((r for r in self.objects[otype].values() if not r["archived"]),
                      key=lambda r: int(r["id"]))
        chunk = live[start:start + limit]
        body: dict[str, Any] = {"results": [self._out(otype, r, self._wanted(request))
                                            for r in chunk]}
        if start + limit < len(live):
            after = str(start + limit)
            body["paging"] = {"next": {"after": after, "link": f"?after={after}"}}
        return json_response(body)

    def get_object(self, request: Request, otype: str, oid: str) -> Response:
        otype = self._type(otype)
        id_property = request.args.get("idProperty")
        if id_property:
            matches = [r for r in self.objects[otype].values()
                       if not r["archived"] and r["properties"].get(id_property) == oid]
            if not matches:
                raise HostError(404, "Object not found.", "OBJECT_NOT_FOUND")
            record = matches[0]
        else:
            record = self._live(otype, oid)
        return json_response(self._out(otype, record, self._wanted(request)))

    def create_object(self, request: Request, otype: str) -> Response:
        otype = self._type(otype)
        body = self.body(request)
        values = body.get("properties", {})
        self._check_props(otype, values, None)
        targets = [(a["to"]["id"], t["associationTypeId"]) for a in body.get("associations", [])
                   for t in a["types"]]
        if otype == "leads" and not any(t == LEAD_TO_CONTACT for _, t in targets):
            raise HostError(400, "Leads must be created with a primary contact association "
                                 f"(associationTypeId {LEAD_TO_CONTACT})")
        for target, _ in targets:
            self._live("contacts", str(target))
        record = self._store(otype, values)
        for target, _ in targets:
            self.associations.add((otype, record["id"], "contacts", str(target)))
        return json_response(self._out(otype, record, list(values) or None), 201)

    def update_object(self, request: Request, otype: str, oid: str) -> Response:
        otype = self._type(otype)
        record = self._live(otype, oid)
        values = self.body(request).get("properties", {})
        self._check_props(otype, values, oid)
        self._store(otype, values, oid)
        return json_response(self._out(otype, record, list(values) or None))

    def archive_object(self, request: Request, otype: str, oid: str) -> Response:
        record = self._live(self._type(otype), oid)
        record["archived"] = True
        record["archivedAt"] = iso(self.now())
        return Response(status=204)

    def batch_upsert(self, request: Request, otype: str) -> Response:
        otype = self._type(otype)
        if otype == "leads":
            raise HostError(400, "Leads must be created with a primary contact association")
        started = iso(self.now())
        results = []
        for item in self.body(request)["inputs"]:
            id_property = item.get("idProperty")
            if not id_property or not self.props[otype].get(id_property, {}).get("hasUniqueValue"):
                raise HostError(400, f"idProperty {id_property!r} is not a unique-value property")
            values = dict(item["properties"], **{id_property: item["id"]})
            existing = next((r for r in self.objects[otype].values()
                             if r["properties"].get(id_property) == item["id"]), None)
            self._check_props(otype, values, existing["id"] if existing else None)
            record = self._store(otype, values, existing["id"] if existing else None)
            results.append(dict(self._out(otype, record, list(values)), new=existing is None))
        return json_response({"status": "COMPLETE", "results": results, "startedAt": started,
                              "completedAt": iso(self.now())})

    def search(self, request: Request, otype: str) -> Response:
        otype = self._type(otype)
        body = self.body(request)
        limit, after = body["limit"], int(body.get("after") or 0)
        if limit > 200:
            raise HostError(400, "limit must be at most 200")
        if after + limit > 10_000:
            raise HostError(400, "Search results are limited to 10,000 per query")
        hits = [r for r in self.objects[otype].values() if not r["archived"]
                and _matches(r["properties"], body.get("filterGroups", []))]
        for sort in reversed(body.get("sorts") or []):
            name = sort.get("propertyName") if isinstance(sort, dict) else sort.lstrip("-")
            desc = (sort.get("direction") == "DESCENDING" if isinstance(sort, dict)
                    else sort.startswith("-"))
            hits.sort(key=lambda r, n=name: (_sortable(r["properties"].get(n)), int(r["id"])),
                      reverse=desc)
        chunk = hits[after:after + limit]
        out: dict[str, Any] = {"total": len(hits),
                               "results": [self._out(otype, r, body.get("properties") or None)
                                           for r in chunk]}
        if after + limit < len(hits):
            out["paging"] = {"next": {"after": str(after + limit)}}
        return json_response(out)

    def associate(self, request: Request, otype: str, oid: str, totype: str, toid: str) -> Response:
        self._live(self._type(otype), oid)
        self._live(self._type(totype), toid)
        self.associations.add((otype, oid, totype, toid))
        now = iso(self.now())
        return json_response({"status": "COMPLETE", "startedAt": now, "completedAt": now,
                              "results": [{"from": {"id": oid}, "to": {"id": toid},
                                           "associationSpec": {
                                               "associationCategory": "HUBSPOT_DEFINED",
                                               "associationTypeId": 1}}]})

    def get_property(self, request: Request, otype: str, name: str) -> Response:
        prop = self.props[self._type(otype)].get(name)
        if prop is None:
            raise HostError(404, f"Unable to find property {name}", "OBJECT_NOT_FOUND")
        return json_response(_property_out(prop))

    def create_property(self, request: Request, otype: str) -> Response:
        otype = self._type(otype)
        body = self.body(request)
        if body["name"] in self.props[otype]:
            raise HostError(409, f"A property named '{body['name']}' already exists.", "CONFLICT")
        if body["groupName"] not in self.groups[otype]:
            raise HostError(400, f"group {body['groupName']} does not exist")
        self.props[otype][body["name"]] = dict(body)
        return json_response(_property_out(body), 201)

    def get_group(self, request: Request, otype: str, name: str) -> Response:
        if name not in self.groups[self._type(otype)]:
            raise HostError(404, f"Unable to find group {name}", "OBJECT_NOT_FOUND")
        return json_response({"name": name, "label": name, "displayOrder": 0, "archived": False})

    def create_group(self, request: Request, otype: str) -> Response:
        body = self.body(request)
        self.groups[self._type(otype)].add(body["name"])
        return json_response({"name": body["name"], "label": body["label"], "displayOrder": 0,
                              "archived": False}, 201)

    # --- the contract's view of the host -------------------------------------------
    def add_contact(self, *, email: str, first_name: str, last_name: str,
                    tags: Any = ()) -> str:
        with self.lock:
            values = {"email": email, "firstname": first_name, "lastname": last_name}
            if tags:
                self.props["contacts"].setdefault(TAGS, {"name": TAGS, "hasUniqueValue": False})
                values[TAGS] = ";".join(tags)
            record = self._store("contacts", values)
            self.advance(0.001)
            return record["id"]

    def change_contact(self, external_id: str, *, by_integration: bool = False,
                       backdate: float = 0.0, **fields: Any) -> None:
        with self.lock:
            values = {CANONICAL[k]: v for k, v in fields.items()}
            self._store("contacts", values, external_id,
                        stamp=self.now() - timedelta(seconds=backdate))
            self.advance(0.001)

    def delete_contact(self, external_id: str) -> None:
        with self.lock:
            self.objects["contacts"][external_id]["archived"] = True

    def written(self, kind: str, key: str) -> list[dict[str, Any]]:
        otype = KINDS[kind]
        out = []
        for record in self.objects[otype].values():
            if record["properties"].get(KEY) == key:
                linked = [c for (t, i, tt, c) in self.associations
                          if t == otype and i == record["id"] and tt == "contacts"]
                out.append({"id": record["id"], "contact": linked[0] if linked else None,
                            "subject": record["properties"].get(TITLES[otype]),
                            "properties": record["properties"]})
        return out

    def contact_tags(self, external_id: str) -> set[str]:
        raw = self.objects["contacts"][external_id]["properties"].get(TAGS) or ""
        return {t for t in raw.split(";") if t}

    def contact_value(self, external_id: str, field: str) -> Any:
        return self.objects["contacts"][external_id]["properties"].get(CANONICAL[field])

    def forbid_owner_listing(self) -> None:
        """The token loses the owners scope (an app installed before it asked for it)."""
        self.scopes.discard(OWNERS_SCOPE)

    def rate_limit_next(self, retry_after: int) -> None:
        self.inject(429, {"status": "error", "errorType": "RATE_LIMIT",
                          "message": "You have reached your ten_secondly_rolling limit.",
                          "correlationId": str(uuid.uuid4()),
                          "policyName": "TEN_SECONDLY_ROLLING"},
                    headers={"Retry-After": str(retry_after)})

    def exhaust_daily_budget(self) -> None:
        self.daily_limit = self.daily_used.get(self.now().date().isoformat(), 0)

    def event(self, external_id: str, *, by_integration: bool = False, age: float = 0.0,
              subscription: str = "contact.propertyChange",
              change: tuple[str, str] = ("firstname", "Ada")) -> dict[str, Any]:
        """One webhook event of this account about a contact, as HubSpot words it."""
        at = self.now() - timedelta(seconds=age)
        event = {"eventId": next(self.event_ids), "subscriptionId": 2001,
                 "portalId": self.portal_id, "appId": APP_ID, "occurredAt": ms(at),
                 "subscriptionType": subscription, "attemptNumber": 0,
                 "objectId": int(external_id),
                 "changeSource": "INTEGRATION" if by_integration else "CRM_UI",
                 "sourceId": str(APP_ID) if by_integration else "userId:777"}
        if subscription.endswith("propertyChange"):
            event.update(propertyName=change[0], propertyValue=change[1])
        return event

    def emit_webhook(self, url: str, external_id: str, *, forged: bool = False,
                     age: float = 0.0, by_integration: bool = False,
                     subscription: str = "contact.propertyChange") -> requests.Response:
        event = self.event(external_id, by_integration=by_integration, age=age,
                           subscription=subscription)
        return deliver(url, [event], self.now() - timedelta(seconds=age), forged=forged)


def deliver(url: str, events: list[dict[str, Any]], at: datetime, *, forged: bool = False,
            secret: str = CLIENT_SECRET, signed_for: str | None = None) -> requests.Response:
    """POST one batch as the app's webhook subscription does, signed (v3) at ``at`` for
    ``url`` (or ``signed_for``)."""
    body = json.dumps(events).encode()
    timestamp = str(ms(at))
    secret = "not-the-secret" if forged else secret
    signature = sign_v3(secret, "POST", signed_for or url, body, timestamp)
    headers = {"Content-Type": "application/json", "X-HubSpot-Request-Timestamp": timestamp,
               "X-HubSpot-Signature-v3": signature,
               "X-HubSpot-Signature-Version": "v3"}
    return requests.post(url, data=body, headers=headers, timeout=5)


class FakeHubSpotAuth(FakeAuthorizationServer):
    """HubSpot's OAuth server for the accounts given. ``choose`` is the account the next
    installing user picks on the consent screen; an issued token is made the one that
    account's fake accepts. ``hub_id_in_answer`` puts ``hub_id`` in the token answer, as
    some HubSpot versions do; by default only the token metadata names the account."""

    def __init__(self, *accounts: FakeHubSpot, client_id: str, client_secret: str,
                 hub_id_in_answer: bool = False):
        super().__init__("/oauth/authorize", "/oauth/v1/token", client_id=client_id,
                         client_secret=client_secret, clock=accounts[0].clock)
        self.accounts = {a.portal_id: a for a in accounts}
        self.choose = accounts[0].portal_id
        self.hub_id_in_answer = hub_id_in_answer
        self.code_hubs: dict[str, int] = {}
        self.refresh_hubs: dict[str, int] = {}
        self.token_hubs: dict[str, tuple[int, Any, str]] = {}  # token -> hub, expiry, scope

    def rules(self) -> list[Rule]:
        return [*super().rules(), Rule("/oauth/v1/access-tokens/<token>",
                                       endpoint=self.token_info, methods=["GET"])]

    def authorize(self, request: Request) -> Response:
        response = super().authorize(request)
        self.code_hubs[next(reversed(self.codes))] = self.choose
        return response

    def token(self, request: Request) -> Response:
        form = request.form
        hub = (self.code_hubs.pop(form.get("code", ""), None)
               or self.refresh_hubs.get(form.get("refresh_token", "")))
        self.extra = {"hub_id": hub} if self.hub_id_in_answer and hub else {}
        response = super().token(request)  # raises HostError when refused
        issued = self.issued[-1]
        if hub is not None:
            expires = self.now() + timedelta(seconds=issued["expires_in"])
            self.token_hubs[issued["access_token"]] = (hub, expires, issued.get("scope") or "")
            if issued.get("refresh_token"):
                self.refresh_hubs[issued["refresh_token"]] = hub
            self.accounts[hub].token = issued["access_token"]
        return response

    def token_info(self, request: Request, token: str) -> Response:
        known = self.token_hubs.get(token)
        if known is None or known[1] <= self.now():
            raise HostError(404, "Token not found", "NOT_FOUND")
        hub, expires, scope = known
        return json_response({
            "token": token, "user": "admin@example.com", "hub_domain": f"{hub}.hubspot.example",
            "scopes": scope.split(), "hub_id": hub, "app_id": APP_ID,
            "expires_in": int((expires - self.now()).total_seconds()), "user_id": 777,
            "token_type": "access"})


def _property_out(prop: dict[str, Any]) -> dict[str, Any]:
    return {"name": prop["name"], "label": prop.get("label", prop["name"]),
            "type": prop.get("type", "string"), "fieldType": prop.get("fieldType", "text"),
            "groupName": prop.get("groupName", "contactinformation"), "description": "",
            "options": [], "hasUniqueValue": bool(prop.get("hasUniqueValue"))}


def _sortable(value: Any) -> str:
    return value or ""


def _as_ms(value: Any) -> float | None:
    if value in (None, ""):
        return None
    text = str(value)
    if text.isdigit():
        return float(text)
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def _matches(props: dict[str, Any], groups: list[dict[str, Any]]) -> bool:
    if not groups:
        return True
    return any(all(_test(props, f) for f in group["filters"]) for group in groups)


def _test(props: dict[str, Any], flt: dict[str, Any]) -> bool:
    op, value, actual = flt["operator"], flt.get("value"), props.get(flt["propertyName"])
    if op == "HAS_PROPERTY":
        return actual not in (None, "")
    if op == "NOT_HAS_PROPERTY":
        return actual in (None, "")
    if op in ("EQ", "NEQ"):
        return (str(actual) == str(value)) == (op == "EQ")
    if op == "IN":
        return actual in flt.get("values", [])
    left, right = _as_ms(actual), _as_ms(value)
    if left is None or right is None:
        return False
    return {"GT": left > right, "GTE": left >= right, "LT": left < right,
            "LTE": left <= right}[op]

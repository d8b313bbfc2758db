"""The conformance suite every connector passes, shipped so third-party adapters can too.

Subclass ``ConnectorContract`` in a test module and provide two fixtures: ``host``, a
stateful fake of the CRM (real HTTP on loopback) satisfying ``ContractHost``, and
``connector``, the adapter under test pointed at it with the host's virtual clock. The
suite then checks what the runtime relies on: paged, resumable initial sync; incremental
sync with an overlap window de-duplicated by record version; fetch by id; every write
repeated with the same idempotency key (including a lost answer and a crash before the
outbox commit) leaving exactly one record; tags; webhook verification; retries and budget
circuits. Capabilities the adapter does not declare are skipped, never faked.

Needs pytest (a test-time dependency); nothing in the runtime imports this module.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from datetime import timedelta
from typing import Any, Protocol

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from crm_journeys.clock import VirtualClock
from crm_journeys.connectors.base import (
    ActivitySpec,
    CanonicalContact,
    Connector,
    EmailSpec,
    InboundRequest,
    LeadSpec,
    WriteResult,
)
from crm_journeys.connectors.mapping import parse_time
from crm_journeys.errors import (
    BudgetExhaustedError,
    FatalConnectorError,
    RetriableConnectorError,
    WebhookRejected,
)


class ContractHost(Protocol):
    """What the suite needs from a fake host CRM. Field names are canonical ones."""

    clock: VirtualClock

    def add_contact(self, *, email: str, first_name: str, last_name: str,
                    tags: Sequence[str] = ()) -> str:
        """Create a contact as a human user would; returns its host id."""

    def change_contact(self, external_id: str, *, by_integration: bool = False,
                       backdate: float = 0.0, **fields: Any) -> None:
        """Edit a contact; ``backdate`` stamps the change that many seconds in the past
        (a late-indexed write); ``by_integration`` makes our own app the author."""

    def delete_contact(self, external_id: str) -> None: ...

    def written(self, kind: str, key: str) -> list[dict[str, Any]]:
        """Records of ``kind`` (lead, task, phone_call, appointment, email) carrying
        ``key``, each as ``{"id", "contact", "subject"}`` (``contact``: the host id of
        the contact it is linked to)."""

    def contact_tags(self, external_id: str) -> set[str]: ...

    def contact_value(self, external_id: str, field: str) -> Any: ...

    def lose_next_write_response(self) -> None:
        """Commit the next write, then answer it with a 5xx as if the reply were lost."""

    def rate_limit_next(self, retry_after: int) -> None:
        """Answer the next request with the host's 429 and ``Retry-After``."""

    def exhaust_daily_budget(self) -> None:
        """Answer every following request with the host's "daily budget spent" error."""

    def emit_webhook(self, url: str, external_id: str, *, forged: bool = False,
                     age: float = 0.0, by_integration: bool = False) -> None:
        """POST the host's change notification for the contact to ``url``, signed as the
        host signs it (``forged``: with a wrong secret; ``age``: that many seconds old)."""


class WebhookReceiver:
    """A loopback endpoint that keeps what it received as ``InboundRequest`` objects."""

    def __init__(self, clock: VirtualClock):
        self.clock = clock
        self.received: list[InboundRequest] = []
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True,
                                   request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,),
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/hooks/contract"

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        self.received.append(InboundRequest(request.method, request.url,
                                            dict(request.headers), request.get_data(),
                                            self.clock.now()))
        return Response("", 204)(environ, start_response)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def drain(connector: Connector, cursor: str | None, page_size: int,
          max_pages: int = 100) -> tuple[list[CanonicalContact], str | None, int]:
    """Run ``sync_page`` until done: (contacts, final cursor, pages)."""
    contacts: list[CanonicalContact] = []
    for pages in range(1, max_pages + 1):
        page = connector.sync_page(cursor, page_size=page_size)
        assert len(page.contacts) <= page_size, "a page larger than asked for"
        contacts.extend(page.contacts)
        cursor = page.cursor
        if page.done:
            return contacts, cursor, pages
    raise AssertionError(f"sync did not finish in {max_pages} pages")


class ConnectorContract:
    """The suite. Subclasses provide ``host`` and ``connector`` fixtures."""

    page_size = 3
    seeded = 7

    # --- fixtures -------------------------------------------------------------------
    @pytest.fixture
    def seeded_ids(self, host: ContractHost) -> list[str]:
        return [host.add_contact(email=f"person{i}@example.com", first_name=f"First{i}",
                                 last_name=f"Last{i}", tags=["vip"] if i == 0 else ())
                for i in range(self.seeded)]

    @pytest.fixture
    def synced(self, connector: Connector, host: ContractHost,
               seeded_ids: list[str]) -> str | None:
        """The cursor after a complete initial sync."""
        _, cursor, _ = drain(connector, None, self.page_size)
        host.clock.advance(timedelta(seconds=30))
        return cursor

    @pytest.fixture
    def receiver(self, host: ContractHost) -> Iterator[WebhookReceiver]:
        with WebhookReceiver(host.clock) as receiver:
            yield receiver

    @pytest.fixture
    def contact_id(self, host: ContractHost) -> str:
        return host.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace")

    def requires(self, connector: Connector, capability: str) -> None:
        if capability not in connector.capabilities:
            pytest.skip(f"{connector.name} does not declare {capability!r}")

    # --- reading --------------------------------------------------------------------
    def test_initial_sync_visits_every_contact_once_in_pages(self, connector, seeded_ids):
        contacts, cursor, pages = drain(connector, None, self.page_size)
        ids = [c.external_id for c in contacts]
        assert sorted(ids) == sorted(seeded_ids)
        assert len(ids) == len(set(ids))
        assert pages >= -(-self.seeded // self.page_size)
        assert cursor

    def test_initial_sync_resumes_from_a_saved_cursor(self, connector, seeded_ids):
        first = connector.sync_page(None, page_size=self.page_size)
        assert not first.done
        resumed = type(connector)(connector.settings, connector.credentials, **connector.context)
        rest, _, _ = drain(resumed, first.cursor, self.page_size)
        ids = [c.external_id for c in first.contacts + rest]
        assert sorted(ids) == sorted(seeded_ids)

    def test_incremental_sync_returns_only_changed_contacts(self, connector, host, seeded_ids,
                                                            synced):
        host.change_contact(seeded_ids[1], first_name="Changed")
        host.change_contact(seeded_ids[4], phone="+44 20 7946 0000")
        host.clock.advance(timedelta(seconds=5))
        contacts, _, _ = drain(connector, synced, self.page_size)
        by_id = {c.external_id: c for c in contacts}
        assert set(by_id) == {seeded_ids[1], seeded_ids[4]}
        assert by_id[seeded_ids[1]].first_name == "Changed"

    def test_overlap_rereads_are_deduplicated_by_version(self, connector, host, seeded_ids,
                                                          synced):
        host.change_contact(seeded_ids[2], last_name="Once")
        host.clock.advance(timedelta(seconds=5))
        contacts, cursor, _ = drain(connector, synced, self.page_size)
        assert [c.external_id for c in contacts] == [seeded_ids[2]]
        host.clock.advance(timedelta(seconds=5))
        again, cursor, _ = drain(connector, cursor, self.page_size)
        assert again == [], "a record re-read in the overlap window came back unchanged"
        host.change_contact(seeded_ids[2], last_name="Twice")
        host.clock.advance(timedelta(seconds=5))
        third, _, _ = drain(connector, cursor, self.page_size)
        assert [(c.external_id, c.last_name) for c in third] == [(seeded_ids[2], "Twice")]

    def test_late_indexed_change_inside_the_overlap_is_caught(self, connector, host,
                                                              seeded_ids, synced):
        host.change_contact(seeded_ids[0], first_name="Early")
        host.clock.advance(timedelta(seconds=5))
        _, cursor, _ = drain(connector, synced, self.page_size)
        host.change_contact(seeded_ids[3], first_name="Late", backdate=20)
        contacts, _, _ = drain(connector, cursor, self.page_size)
        assert [c.external_id for c in contacts] == [seeded_ids[3]]

    def test_deleted_contact_is_reported(self, connector, host, seeded_ids, synced):
        self.requires(connector, "deletes")
        host.delete_contact(seeded_ids[5])
        host.clock.advance(timedelta(seconds=5))
        contacts, _, _ = drain(connector, synced, self.page_size)
        assert [(c.external_id, c.deleted) for c in contacts] == [(seeded_ids[5], True)]

    def test_own_changes_are_flagged_as_echo(self, connector, host, seeded_ids, synced):
        self.requires(connector, "echo")
        host.change_contact(seeded_ids[6], first_name="Ours", by_integration=True)
        host.change_contact(seeded_ids[1], first_name="Theirs")
        host.clock.advance(timedelta(seconds=5))
        contacts, _, _ = drain(connector, synced, self.page_size)
        assert {c.external_id: c.echo for c in contacts} == {seeded_ids[6]: True,
                                                             seeded_ids[1]: False}

    def test_fetch_contact_maps_the_canonical_fields(self, connector, host):
        ref = host.add_contact(email="grace@example.com", first_name="Grace",
                               last_name="Hopper", tags=["vip", "navy"])
        contact = connector.fetch_contact(ref)
        assert contact is not None and contact.external_id == ref
        assert (contact.email, contact.first_name, contact.last_name) == (
            "grace@example.com", "Grace", "Hopper")
        assert set(contact.tags) == {"vip", "navy"}
        assert contact.modified_at is not None and contact.modified_at.tzinfo is not None
        assert contact.version

    def test_fetch_missing_or_deleted_contact_is_none(self, connector, host, contact_id):
        host.delete_contact(contact_id)
        assert connector.fetch_contact(contact_id) is None

    # --- writing --------------------------------------------------------------------
    def exactly_once(self, host: ContractHost, kind: str, key: str, contact: str,
                     write: Callable[[], WriteResult]) -> WriteResult:
        """The outbox's worst case: the answer is lost, the row is retried, and the worker
        crashes after the call but before its commit, so the row runs a third time."""
        host.lose_next_write_response()
        with suppress(RetriableConnectorError):
            write()
        first = write()
        again = write()
        records = host.written(kind, key)
        assert len(records) == 1, f"{len(records)} {kind} records for one idempotency key"
        assert records[0]["contact"] == contact
        assert first.external_id == again.external_id == str(records[0]["id"])
        assert not again.created
        return first

    def test_create_lead_exactly_once(self, connector, host, contact_id):
        spec = LeadSpec(title="Journey lead", description="from the welcome journey")
        self.exactly_once(host, "lead", "k-lead-1", contact_id,
                          lambda: connector.create_lead(contact_id, spec, "k-lead-1"))

    @pytest.mark.parametrize("kind", ["task", "phone_call", "appointment"])
    def test_create_activity_exactly_once(self, connector, host, contact_id, kind):
        due = host.clock.now().replace(microsecond=0) + timedelta(days=2)
        spec = ActivitySpec(kind=kind, subject=f"Follow up ({kind})", due_at=due,
                            description="call back about the offer")
        record_kind = kind if kind in connector.capabilities or kind == "task" else "task"
        key = f"k-{kind}-1"
        self.exactly_once(host, record_kind, key, contact_id,
                          lambda: connector.create_activity(contact_id, spec, key))
        assert host.written(record_kind, key)[0]["subject"] == spec.subject

    def test_log_email_exactly_once(self, connector, host, contact_id):
        self.requires(connector, "log_email")
        mail = EmailSpec(subject="Welcome", html="<p>Hello</p>", text="Hello", email_id="e1")
        self.exactly_once(host, "email", "k-mail-1", contact_id,
                          lambda: connector.log_email(contact_id, mail, "k-mail-1"))

    def test_update_fields(self, connector, host, contact_id):
        connector.update_fields(contact_id, {"first_name": "Augusta"}, "k-upd-1")
        connector.update_fields(contact_id, {"first_name": "Augusta"}, "k-upd-1")
        assert host.contact_value(contact_id, "first_name") == "Augusta"

    def test_add_and_remove_tags(self, connector, host, contact_id):
        for _ in range(2):
            connector.add_tag(contact_id, "journey-a", "k-tag-1")
        connector.add_tag(contact_id, "journey-b", "k-tag-2")
        assert host.contact_tags(contact_id) == {"journey-a", "journey-b"}
        for _ in range(2):
            connector.remove_tag(contact_id, "journey-a", "k-tag-3")
        assert host.contact_tags(contact_id) == {"journey-b"}
        contact = connector.fetch_contact(contact_id)
        assert contact is not None and contact.tags == ["journey-b"]

    # --- webhooks -------------------------------------------------------------------
    def test_webhook_signed_by_the_host_is_accepted(self, connector, host, receiver,
                                                    contact_id):
        self.requires(connector, "webhooks")
        host.emit_webhook(receiver.url, contact_id)
        request = receiver.received[-1]
        connector.verify_webhook(request)
        hints = connector.parse_webhook(request)
        assert [h.object_id for h in hints] == [contact_id]
        assert hints[0].event_id and not hints[0].echo

    def test_forged_webhook_is_rejected(self, connector, host, receiver, contact_id):
        self.requires(connector, "webhooks")
        host.emit_webhook(receiver.url, contact_id, forged=True)
        with pytest.raises(WebhookRejected):
            connector.verify_webhook(receiver.received[-1])

    def test_tampered_webhook_body_is_rejected(self, connector, host, receiver, contact_id):
        self.requires(connector, "signed_webhooks")
        host.emit_webhook(receiver.url, contact_id)
        original = receiver.received[-1]
        tampered = InboundRequest(original.method, original.url, original.headers,
                                  original.body.replace(contact_id.encode(), b"999999"),
                                  original.received_at)
        with pytest.raises(WebhookRejected):
            connector.verify_webhook(tampered)

    def test_stale_webhook_is_rejected(self, connector, host, receiver, contact_id):
        self.requires(connector, "webhooks")
        host.emit_webhook(receiver.url, contact_id, age=6 * 3600)
        with pytest.raises(WebhookRejected):
            connector.verify_webhook(receiver.received[-1])

    def test_webhook_for_our_own_change_is_an_echo(self, connector, host, receiver,
                                                   contact_id):
        self.requires(connector, "webhooks")
        host.emit_webhook(receiver.url, contact_id, by_integration=True)
        request = receiver.received[-1]
        connector.verify_webhook(request)
        assert all(h.echo for h in connector.parse_webhook(request))

    # --- the host pushing back ------------------------------------------------------
    def test_rate_limit_is_waited_out_on_virtual_time(self, connector, host, contact_id):
        before = host.clock.now()
        host.rate_limit_next(retry_after=3)
        assert connector.fetch_contact(contact_id) is not None
        assert host.clock.now() - before >= timedelta(seconds=3)

    def test_spent_daily_budget_opens_the_circuit(self, connector, host, contact_id):
        host.exhaust_daily_budget()
        with pytest.raises(BudgetExhaustedError) as info:
            connector.fetch_contact(contact_id)
        assert info.value.retry_after and info.value.retry_after > 0
        sent = len(getattr(host, "requests", []))
        with pytest.raises(BudgetExhaustedError):
            connector.add_tag(contact_id, "x", "k-budget")
        assert len(getattr(host, "requests", [])) == sent, "a request went out on an open circuit"



class HostRefusalContract:
    """What a host refuses, and owners as its users know them: the second half of the suite.

    Subclasses provide ``host`` and ``connector`` (as for ``ConnectorContract``) and:

    - ``refused_connector``: the adapter pointed at the host with credentials it refuses
      and no way to renew them;
    - ``unknown_owner``: an id shaped like the host's owner ids that names no user;
    - the host knows an active owner ``sam@sales.example`` and a deactivated one
      ``gone@sales.example``, and ``host.forbid_owner_listing()`` takes away the
      permission to list users (a scope, a profile flag, a role or a group).

    A write the host refused must never come back as done: each refusal raises
    ``FatalConnectorError`` with a sentence an admin can act on and leaves no record.
    """

    unknown_field = "crmj_shoe_size"

    @pytest.fixture
    def contact_id(self, host: ContractHost) -> str:
        return host.add_contact(email="ada@example.com", first_name="Ada", last_name="Lovelace")

    def test_owners_are_the_hosts_active_users(self, connector):
        owners = {o.email: o for o in connector.list_owners()}
        assert "owners" in connector.capabilities
        assert "sam@sales.example" in owners, owners
        assert "gone@sales.example" not in owners, "a deactivated user offered as owner"
        assert owners["sam@sales.example"].name and owners["sam@sales.example"].id

    def test_a_listed_owner_can_be_assigned_work(self, connector, host, contact_id):
        sam = next(o for o in connector.list_owners() if o.email == "sam@sales.example")
        spec = ActivitySpec(kind="task", subject="Call Ada", owner=sam.id,
                            due_at=host.clock.now().replace(microsecond=0) + timedelta(days=1))
        result = connector.create_activity(contact_id, spec, "k-owned-1")
        assert result.created and len(host.written("task", "k-owned-1")) == 1

    def test_unknown_owner_is_refused_and_nothing_is_written(self, connector, host, contact_id,
                                                             unknown_owner):
        spec = ActivitySpec(kind="task", subject="Call Ada", owner=unknown_owner,
                            due_at=host.clock.now().replace(microsecond=0) + timedelta(days=1))
        with pytest.raises(FatalConnectorError):
            connector.create_activity(contact_id, spec, "k-owner-x")
        assert host.written("task", "k-owner-x") == []

    def test_unknown_field_is_refused_naming_it(self, connector, contact_id):
        with pytest.raises(FatalConnectorError, match=f"no field '{self.unknown_field}'"):
            connector.update_fields(contact_id, {self.unknown_field: "44"}, "k-field-x")

    def test_refused_credentials_say_what_to_fix(self, refused_connector, contact_id):
        with pytest.raises(FatalConnectorError, match="refused the credentials: .*(reconnect|"
                                                      "new one|reinstall)") as info:
            refused_connector.fetch_contact(contact_id)
        assert "Traceback" not in str(info.value)

    def test_a_missing_permission_says_what_to_grant(self, connector, host):
        host.forbid_owner_listing()  # the fake's way to take the permission away
        with pytest.raises(FatalConnectorError, match="refused the request: .*(grant|add it)"):
            connector.list_owners()

    def test_signup_date_is_the_hosts_created_date(self, connector, host):
        created = host.clock.now()
        ref = host.add_contact(email="new@example.com", first_name="New", last_name="Comer")
        contact = connector.fetch_contact(ref)
        assert contact is not None and contact.signup_date
        joined = parse_time(contact.signup_date)
        assert joined is not None and abs((joined - created).total_seconds()) < 2
        assert contact.as_fields()["signup_date"] == contact.signup_date

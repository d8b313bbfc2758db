"""The events API's group commit: concurrent requests share a transaction, yet each gets
what it would have got alone (its own 202, duplicate, 401, 403 or 422), only after the
commit, and one bad event never loses the others. A refused caller gets its 401 before
its body is validated, and a token is looked up once per request."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crm_journeys.auth.accounts import Principal, token_principal_on
from crm_journeys.auth.admin import revoke_token
from crm_journeys.runtime.ingest import IncomingEvent, ingest_each
from crm_journeys.storage.auth_models import ApiToken
from crm_journeys.storage.models import InboxEvent
from crm_journeys.web.access import Access
from crm_journeys.web.api.activity import INTAKE
from crm_journeys.web.api.intake import EventIntake, Submission
from crm_journeys.web.api.schemas import EventIn
from crm_journeys.web.group_commit import GroupCommit
from tests.web_fixtures import Api

# --- the mechanism, without a database ----------------------------------------------------


class Gate:
    """A batch runner that holds its first batch until ``release``, recording every batch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.entered, self.opened = threading.Event(), threading.Event()

    def run(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(items)
        if len(self.batches) == 1:
            self.entered.set()
            self.opened.wait(5)
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


def _submit_all(group: GroupCommit[int, int], items: list[int]) -> dict[int, object]:
    results: dict[int, object] = {}

    def one(i: int) -> None:
        try:
            results[i] = group.submit(i)
        except ValueError as exc:
            results[i] = str(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in items]
    for t in threads:
        t.start()
    return {"threads": threads, "results": results}


def _wait_queued(group: GroupCommit[int, int], n: int) -> None:
    for _ in range(500):
        if len(group._waiting) == n:  # noqa: SLF001 - the test waits for the queue to form
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"{n} submissions never queued")


def test_a_lone_submission_runs_at_once_in_its_own_thread():
    seen: list[str] = []
    group: GroupCommit[int, int] = GroupCommit(lambda items: seen.append(threading.current_thread().name)
                                               or [i + 1 for i in items])
    assert group.submit(1) == 2 and group.submit(5) == 6
    assert seen == [threading.current_thread().name] * 2


def test_requests_arriving_during_a_batch_go_together_and_each_gets_its_own_outcome():
    gate = Gate()
    group: GroupCommit[int, int] = GroupCommit(gate.run)
    first = _submit_all(group, [0])
    assert gate.entered.wait(5)
    rest = _submit_all(group, [1, 2, 3, 4])
    _wait_queued(group, 4)
    gate.opened.set()
    for t in first["threads"] + rest["threads"]:
        t.join(5)
    assert gate.batches[0] == [0] and sorted(gate.batches[1]) == [1, 2, 3, 4] and len(gate.batches) == 2
    assert first["results"] == {0: 0}
    assert rest["results"] == {1: "odd 1", 2: 20, 3: "odd 3", 4: 40}


def test_a_runner_that_fails_fails_its_batch_only():
    calls = {"n": 0}

    def run(items: list[int]) -> list[int | BaseException]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return items

    group: GroupCommit[int, int] = GroupCommit(run)
    with pytest.raises(RuntimeError, match="boom"):
        group.submit(1)
    assert group.submit(2) == 2


def test_on_idle_runs_when_nobody_waits_not_between_busy_batches():
    gate, idle = Gate(), []
    group: GroupCommit[int, int] = GroupCommit(gate.run, on_idle=lambda: idle.append(len(gate.batches)))
    first = _submit_all(group, [0])
    assert gate.entered.wait(5)
    rest = _submit_all(group, [2, 4])
    _wait_queued(group, 2)
    gate.opened.set()
    for t in first["threads"] + rest["threads"]:
        t.join(5)
    assert idle == [2]  # after the second batch only: the first handed over to waiters


def test_a_capped_batch_leaves_the_rest_for_the_next_leader():
    gate = Gate()
    group: GroupCommit[int, int] = GroupCommit(gate.run, max_batch=2)
    first = _submit_all(group, [0])
    assert gate.entered.wait(5)
    rest = _submit_all(group, [2, 4, 6, 8, 10])
    _wait_queued(group, 5)
    gate.opened.set()
    for t in first["threads"] + rest["threads"]:
        t.join(5)
    assert rest["results"] == {2: 20, 4: 40, 6: 60, 8: 80, 10: 100}
    assert all(len(b) <= 2 for b in gate.batches)


# --- the events API over a real database ------------------------------------------------


def _event(i: int, **extra: object) -> dict[str, object]:
    return {"type": "subscribed", "key": "newsletter", "id": f"c-{i}", "contact": {"email": f"c{i}@example.com"},
            "properties": {"list": "newsletter"}, **extra}


def _inbox_count(app, tenant_id: int) -> int:
    with app.extensions["crm_journeys"].db.unit_of_work() as s:
        return s.scalar(select(func.count(InboxEvent.id)).where(InboxEvent.tenant_id == tenant_id))


def test_concurrent_requests_are_all_stored_and_answered_once_committed(app):
    token, tenant = app.config["TEST_TOKENS"]["acme_editor"], app.config["TEST_TENANTS"]["acme"]
    answers: dict[int, tuple[int, object]] = {}

    def sender(k: int) -> None:
        api = Api(app.test_client(), token)
        for i in range(k, 60, 6):
            r = api.post("/events", json=_event(i % 50))  # 10 repeats of ids already sent
            answers[i] = (r.status_code, r.json)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(answers) == 60 and {status for status, _ in answers.values()} == {202}
    assert sum(body["accepted"] for _, body in answers.values()) == 50
    assert sum(body["duplicate"] for _, body in answers.values()) == 10
    assert _inbox_count(app, tenant) == 50


def _intake(app) -> EventIntake:
    return app.extensions[INTAKE]


def _submission(app, clock, body: dict[str, object], *, who: str = "acme_editor",
                error: Exception | None = None, **access: object) -> Submission:
    if not access:
        access = {"token": app.config["TEST_TOKENS"][who]}
    return Submission(Access("events", input_error=error, **access), body, clock.now())


def test_one_batch_answers_each_request_as_if_alone(app, clock):
    from marshmallow import ValidationError

    with app.app_context():
        outcomes = _intake(app).run_batch([
            _submission(app, clock, _event(1)),
            _submission(app, clock, _event(1)),  # the same id in the same batch: a duplicate
            _submission(app, clock, _event(2), who="acme_viewer"),  # may not send events
            _submission(app, clock, {}, token="cjt_unknown", error=ValidationError({"type": ["bad"]})),
            _submission(app, clock, {}, error=ValidationError({"type": ["bad"]})),
            _submission(app, clock, _event(3, type="teleported")),
            _submission(app, clock, _event(3), who="globex_editor"),  # another tenant, same id
        ])
    assert [o[0] if isinstance(o, tuple) else type(o).__name__ for o in outcomes] == \
        [True, False, "ApiError", "ApiError", "ValidationError", "ApiError", True]
    assert (outcomes[2].status, outcomes[3].status, outcomes[5].status) == (403, 401, 422)
    assert outcomes[4].messages == {"type": ["bad"]}  # the input's error once access is granted
    assert _inbox_count(app, app.config["TEST_TENANTS"]["acme"]) == 1
    assert _inbox_count(app, app.config["TEST_TENANTS"]["globex"]) == 1


def test_a_failing_event_does_not_lose_the_others(app, clock):
    ghost = Principal(tenant_id=10**6, role="editor", name="a tenant that is gone")  # its row breaks the FK
    with app.app_context():
        outcomes = _intake(app).run_batch([
            _submission(app, clock, _event(1)),
            _submission(app, clock, _event(2), principal=ghost),
            _submission(app, clock, _event(3)),
        ])
    assert outcomes[0] == (True, outcomes[0][1]) and outcomes[2][0] is True
    assert not isinstance(outcomes[1], tuple)
    assert _inbox_count(app, app.config["TEST_TENANTS"]["acme"]) == 2


def _revoke_editor_token(app) -> None:
    with app.extensions["crm_journeys"].db.unit_of_work() as s:
        token_id = s.scalar(select(ApiToken.id).where(ApiToken.name == "editor token",
                                                      ApiToken.tenant_id == app.config["TEST_TENANTS"]["acme"]))
        revoke_token(s, app.config["TEST_TENANTS"]["acme"], token_id)


def test_a_revoked_token_is_refused_by_the_next_batch(app, clock, as_):
    api = as_("acme_editor")
    assert api.post("/events", json=_event(1)).status_code == 202
    _revoke_editor_token(app)
    refused = api.post("/events", json=_event(2))
    assert refused.status_code == 401 and refused.json["message"] == "The API token is unknown or revoked."


def test_access_is_checked_before_the_body(as_, app):
    bad_body = {"type": "subscribed", "contact": {}}
    nobody = Api(app.test_client(), "cjt_not-a-token").post("/events", json=bad_body)
    assert nobody.status_code == 401
    viewer = as_("acme_viewer").post("/events", json=bad_body)
    assert viewer.status_code == 403
    editor = as_("acme_editor").post("/events", json=bad_body)
    assert editor.status_code == 422 and editor.json["errors"] == {"contact.email": ["identify the contact by email or id"]}
    garbled = as_("acme_editor").client.post("/api/events", data="{not json", content_type="application/json",
                                              headers={"Authorization": "Bearer cjt_nope"})
    assert garbled.status_code == 401


@pytest.fixture
def validations(monkeypatch) -> list[object]:
    """Every body the events API's schema validates (a spy on ``EventIn.load``)."""
    seen: list[object] = []
    load = EventIn.load

    def spy(self, data, *args, **kwargs):
        seen.append(data)
        return load(self, data, *args, **kwargs)

    monkeypatch.setattr(EventIn, "load", spy)
    return seen


@pytest.fixture
def lookups(monkeypatch) -> list[str]:
    """Every token the intake's batches look up."""
    seen: list[str] = []

    def spy(conn, token, now=None):
        seen.append(token)
        return token_principal_on(conn, token, now)

    monkeypatch.setattr("crm_journeys.web.api.intake.token_principal_on", spy)
    return seen


def test_a_refused_caller_gets_401_without_its_body_being_validated(app, validations):
    bad_body = {"type": "subscribed", "contact": {}, "properties": {str(i): i for i in range(1000)}}
    for headers in ({"Authorization": "Bearer cjt_not-a-token"}, {}):  # a wrong token; neither token nor session
        answer = app.test_client().post("/api/events", json=bad_body, headers=headers)
        assert answer.status_code == 401
    assert validations == []


def test_a_token_is_looked_up_once_per_request_and_first_when_not_known_good(app, as_, validations, lookups):
    api, bad_body = as_("acme_editor"), {"type": "subscribed", "contact": {}}
    assert api.post("/events", json=_event(1)).status_code == 202  # new: looked up, then validated
    assert api.post("/events", json=_event(2)).status_code == 202  # granted lately: validated first
    assert api.post("/events", json=bad_body).status_code == 422
    assert len(lookups) == 3 and len(validations) == 3
    _revoke_editor_token(app)
    assert api.post("/events", json=bad_body).status_code == 401  # still thought good: validated, refused
    assert api.post("/events", json=bad_body).status_code == 401  # forgotten: refused first
    assert len(lookups) == 5 and len(validations) == 4


def test_a_submission_without_a_body_only_checks_access(app, clock):
    with app.app_context():
        checked, stored, refused = _intake(app).run_batch([
            _submission(app, clock, None), _submission(app, clock, _event(1)),
            _submission(app, clock, None, token="cjt_unknown")])
    assert isinstance(checked, Principal) and checked.tenant_id == app.config["TEST_TENANTS"]["acme"]
    assert stored[0] is True and refused.status == 401
    assert _inbox_count(app, app.config["TEST_TENANTS"]["acme"]) == 1


def test_last_used_is_written_at_most_once_a_minute(as_, app, clock):
    api = as_("acme_editor")

    def last_used():
        with app.extensions["crm_journeys"].db.unit_of_work() as s:
            return s.scalar(select(ApiToken.last_used_at).where(
                ApiToken.name == "editor token", ApiToken.tenant_id == app.config["TEST_TENANTS"]["acme"]))

    api.post("/events", json=_event(1))
    first = last_used()
    assert first == clock.now()
    clock.advance(timedelta(seconds=30))
    api.post("/events", json=_event(2))
    assert last_used() == first
    clock.advance(timedelta(seconds=31))
    api.post("/events", json=_event(3))
    assert last_used() == clock.now()


def test_ingest_each_counts_a_repeat_in_the_list_as_a_duplicate(database, clock):
    from crm_journeys.runtime.tenants import create_tenant

    with database.unit_of_work() as s:
        tenant = create_tenant(s, "t", "T", clock.now()).id
    same = IncomingEvent(type="subscribed", contact={"email": "a@example.com"}, dedup_key="x")
    other = IncomingEvent(type="subscribed", contact={"email": "b@example.com"}, dedup_key="y")
    with database.engine.begin() as conn:
        assert ingest_each(conn, [(tenant, same, clock.now()), (tenant, other, clock.now()),
                                  (tenant, same, clock.now())]) == [True, True, False]
    with database.engine.begin() as conn:
        assert ingest_each(conn, [(tenant, same, clock.now())]) == [False]
        assert ingest_each(conn, []) == []

"""The shared HTTP client against a real loopback server, on virtual time."""

from __future__ import annotations

import logging
import random
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from werkzeug.routing import Rule

from crm_journeys.clock import VirtualClock
from crm_journeys.connectors.http import (
    Auth,
    Call,
    CursorPaginator,
    HostLimits,
    HttpClient,
    NextLinkPaginator,
    OffsetPaginator,
    Redactor,
    RetryPolicy,
    parse_retry_after,
)
from crm_journeys.errors import BudgetExhaustedError, FatalConnectorError, RetriableConnectorError
from tests.fakes.base import FakeCrm, HostError, json_response

TOKEN = "sekrit-token-abcdef123456"


class ScriptedHost(FakeCrm):
    name = "scripted"
    token = TOKEN

    def __init__(self, clock):
        super().__init__(clock)
        self.created = 0
        self.items = [{"id": i} for i in range(1, 8)]
        self.release = threading.Event()

    def rules(self):
        return [
            Rule("/thing", endpoint=self.get_thing, methods=["GET"]),
            Rule("/thing", endpoint=self.create_thing, methods=["POST"]),
            Rule("/echo-error", endpoint=self.echo_error),
            Rule("/missing", endpoint=self.missing),
            Rule("/slow", endpoint=self.slow),
            Rule("/cursor", endpoint=self.cursor_page),
            Rule("/offset", endpoint=self.offset_page),
            Rule("/links", endpoint=self.link_page),
        ]

    def get_thing(self, request):
        return json_response({"ok": True})

    def create_thing(self, request):
        self.created += 1
        return json_response({"id": self.created}, 201)

    def echo_error(self, request):
        raise HostError(400, f"bad header {request.headers.get('Authorization')}", "BAD")

    def missing(self, request):
        raise HostError(404, "no such thing", "NOT_FOUND")

    def slow(self, request):
        self.release.wait(5)
        return json_response({"ok": True})

    def cursor_page(self, request):
        start = int(request.args.get("after", 0))
        limit = int(request.args["limit"])
        chunk = self.items[start:start + limit]
        nxt = start + limit
        paging = {"next": {"after": str(nxt)}} if nxt < len(self.items) else None
        return json_response({"results": chunk, "paging": paging})

    def offset_page(self, request):
        offset, limit = int(request.args["offset"]), int(request.args["limit"])
        return json_response({"rows": self.items[offset:offset + limit], "count": len(self.items)})

    def link_page(self, request):
        start = int(request.args.get("skip", 0))
        body = {"value": self.items[start:start + 3]}
        if start + 3 < len(self.items):
            body["@odata.nextLink"] = f"{self.url}/links?skip={start + 3}"
        else:
            body["@odata.deltaLink"] = f"{self.url}/links?delta=1"
        return json_response(body)


@pytest.fixture
def clock():
    return VirtualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))


@pytest.fixture
def host(clock):
    with ScriptedHost(clock) as fake:
        yield fake
        fake.release.set()


@pytest.fixture
def sleeps(clock):
    waited: list[float] = []

    def sleep(seconds):
        waited.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    return waited, sleep


def make_client(host, clock, sleeps, **kw):
    opts = dict(account="acct-1", auth=Auth.bearer(TOKEN), clock=clock, sleep=sleeps[1],
                rng=random.Random(7), limits=HostLimits())
    opts.update(kw)
    return HttpClient(host.url, **opts)


def test_retries_5xx_with_backoff_then_succeeds(host, clock, sleeps):
    host.inject(503, {"message": "busy"}, times=2)
    client = make_client(host, clock, sleeps)
    assert client.get("/thing") == {"ok": True}
    assert client.attempts == 3
    waited = sleeps[0]
    assert len(waited) == 2
    assert 0 <= waited[0] <= 0.5 and 0 <= waited[1] <= 1.0  # full jitter under the cap


def test_retry_after_seconds_is_honoured(host, clock, sleeps):
    host.inject(429, {"message": "slow down"}, headers={"Retry-After": "7"})
    client = make_client(host, clock, sleeps)
    assert client.get("/thing") == {"ok": True}
    assert 7 <= sleeps[0][0] <= 7.5


def test_retry_after_http_date_is_honoured(host, clock, sleeps):
    when = format_datetime(clock.now() + timedelta(seconds=12), usegmt=True)
    host.inject(503, {"message": "maintenance"}, headers={"Retry-After": when})
    client = make_client(host, clock, sleeps)
    assert client.get("/thing") == {"ok": True}
    assert 12 <= sleeps[0][0] <= 12.5


def test_long_retry_after_goes_back_to_the_outbox(host, clock, sleeps):
    host.inject(429, {"message": "come back later"}, headers={"Retry-After": "600"})
    client = make_client(host, clock, sleeps)
    with pytest.raises(RetriableConnectorError) as info:
        client.get("/thing")
    assert info.value.retry_after == 600
    assert sleeps[0] == []


def test_gives_up_after_max_attempts(host, clock, sleeps):
    host.inject(500, {"message": "boom"}, times=10)
    client = make_client(host, clock, sleeps, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(RetriableConnectorError, match="500: boom"):
        client.get("/thing")
    assert client.attempts == 3


def test_post_is_not_resent_after_a_5xx_but_is_after_a_429(host, clock, sleeps):
    client = make_client(host, clock, sleeps)
    host.inject(502, {"message": "lost"}, after_commit=True)
    with pytest.raises(RetriableConnectorError):
        client.post("/thing")
    assert host.created == 1 and client.attempts == 1
    host.inject(429, {"message": "burst"}, headers={"Retry-After": "1"})
    assert client.post("/thing") == {"id": 2}
    assert host.created == 2
    host.inject(502, {"message": "lost"}, after_commit=True)
    assert client.post("/thing", idempotent=True) == {"id": 4}  # caller vouches: resent


def test_other_4xx_is_fatal_with_the_hosts_message(host, clock, sleeps):
    client = make_client(host, clock, sleeps)
    with pytest.raises(FatalConnectorError) as info:
        client.get("/missing")
    assert info.value.status == 404
    assert "no such thing" in str(info.value)
    assert client.get("/missing", allow_404=True) is None
    assert sleeps[0] == []


def test_budget_exhaustion_opens_a_circuit_until_the_window_resets(host, clock, sleeps):
    reset = clock.now() + timedelta(hours=3)

    def daily(response, now):
        if response.status_code == 429 and response.json().get("policyName") == "DAILY":
            return reset
        return None

    host.inject(429, {"message": "daily limit", "policyName": "DAILY"})
    client = make_client(host, clock, sleeps, budget_rule=daily)
    with pytest.raises(BudgetExhaustedError) as info:
        client.get("/thing")
    assert info.value.retry_after == pytest.approx(3 * 3600)
    sent = len(host.requests)
    # a second client for the same account shares the circuit and sends nothing
    other = make_client(host, clock, sleeps, budget_rule=daily, limits=client.limits)
    with pytest.raises(BudgetExhaustedError):
        other.get("/thing")
    assert len(host.requests) == sent and sleeps[0] == []
    clock.advance(timedelta(hours=3, seconds=1))
    assert other.get("/thing") == {"ok": True}


def test_connection_refused_is_retried_then_retriable(clock, sleeps):
    client = HttpClient("http://127.0.0.1:9", account="x", clock=clock, sleep=sleeps[1],
                        rng=random.Random(1), limits=HostLimits(),
                        retry=RetryPolicy(max_attempts=3))
    with pytest.raises(RetriableConnectorError, match="ConnectionError"):
        client.post("/thing")  # refused: surely unsent, so even a POST is retried
    assert client.attempts == 3 and len(sleeps[0]) == 2


def test_read_timeout_on_post_is_not_resent(host, clock, sleeps):
    client = make_client(host, clock, sleeps, timeout=(1.0, 0.05))
    with pytest.raises(RetriableConnectorError, match="ReadTimeout"):
        client.post("/slow")
    assert client.attempts == 1


def test_token_bucket_paces_each_account(host, clock, sleeps):
    client = make_client(host, clock, sleeps, rate=2.0, burst=2)
    for _ in range(6):
        client.get("/thing")
    # two from the burst, then one every half second
    assert sum(sleeps[0]) == pytest.approx(2.0)


def test_refreshes_the_token_once_on_401(host, clock, sleeps):
    calls = []

    def refresh():
        calls.append(1)
        return TOKEN

    client = make_client(host, clock, sleeps, auth=Auth.bearer("expired-token-xyz", refresh))
    assert client.get("/thing") == {"ok": True}
    assert calls == [1]


def test_secrets_never_reach_logs_or_errors(host, clock, sleeps, caplog):
    caplog.set_level(logging.DEBUG, logger="crm_journeys")
    host.inject(503, {"message": f"echo {TOKEN}"})
    client = make_client(host, clock, sleeps, secrets=["client-secret-42"])
    client.get("/thing", params={"hapikey": "client-secret-42"})
    with pytest.raises(FatalConnectorError) as info:
        client.get("/echo-error", params={"access_token": "abc123456789"})
    text = str(info.value) + caplog.text
    assert TOKEN not in text and "client-secret-42" not in text and "abc123456789" not in text
    assert "***" in str(info.value)


def test_redactor_masks_by_shape():
    redact = Redactor(["known-secret-value"])
    text = redact('Authorization: Bearer eyJhbGciOi.abc.def {"refresh_token": "r-1234567"} '
                  "url?code=xyz987&state=ok known-secret-value")
    assert "eyJhbGciOi" not in text and "r-1234567" not in text and "xyz987" not in text
    assert "known-secret-value" not in text and "state=ok" in text


def test_parse_retry_after():
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert parse_retry_after("3", now) == 3
    assert parse_retry_after("Mon, 02 Mar 2026 09:01:00 GMT", now) == 60
    assert parse_retry_after("Mon, 02 Mar 2026 08:00:00 GMT", now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_cursor_offset_and_link_paginators(host, clock, sleeps):
    client = make_client(host, clock, sleeps)
    ids = [i["id"] for i in client.paginate(Call("GET", "/cursor"), CursorPaginator(), 3)]
    assert ids == list(range(1, 8))
    page = client.page(Call("GET", "/offset"), OffsetPaginator(items=("rows",), total=("count",)),
                       token=6, page_size=3)
    assert [i["id"] for i in page.items] == [7] and page.next is None and page.total == 7
    pages = []
    token = None
    while True:
        page = client.page(Call("GET", "/links"), NextLinkPaginator(), token, 3)
        pages.append(page)
        if page.next is None:
            break
        token = page.next
    assert len(pages) == 3 and pages[-1].body["@odata.deltaLink"].endswith("delta=1")

"""The one guarded path for outbound HTTP to URLs users choose (call_webhook, Eventbrite).

No test reaches the internet: addresses are literal IPs or come from a resolver the test
puts in place of DNS; the servers are real HTTP servers on loopback, allowed by the
admin setting where a test needs to reach them.
"""

from __future__ import annotations

import pytest
from sqlalchemy import update
from werkzeug import Response

from crm_journeys import outbound
from crm_journeys.errors import DefinitionError, RetriableConnectorError
from crm_journeys.integrations import HookRejected, http_fetch
from crm_journeys.storage.models import Tenant


@pytest.mark.parametrize("ip", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",  # loopback, private, metadata
    "100.100.100.200", "100.64.0.1",  # shared address space (a cloud metadata address)
    "0.0.0.0", "224.0.0.1", "239.255.255.250", "255.255.255.255", "192.0.2.1",  # unspecified, multicast, ...
    "::1", "::", "fc00::1", "fe80::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:100.100.100.200", "2001:db8::1",
])
def test_every_non_global_address_is_refused(ip):
    host = f"[{ip}]" if ":" in ip else ip
    with pytest.raises(outbound.UnsafeTarget):
        outbound.check_url(f"http://{host}/hook")


@pytest.mark.parametrize("ip", ["224.0.0.1", "ff02::1", "0.0.0.0", "::"])
def test_multicast_and_unspecified_stay_refused_when_private_targets_are_allowed(ip):
    host = f"[{ip}]" if ":" in ip else ip
    with pytest.raises(outbound.UnsafeTarget, match="multicast or unspecified"):
        outbound.check_url(f"http://{host}/hook", allow_private=True)


def test_a_public_address_passes_and_is_pinned():
    target = outbound.check_url("https://hooks.example/in?x=1", resolver=lambda h, p: ["93.184.216.34"])
    assert (target.ip, target.host, target.port, target.path) == ("93.184.216.34", "hooks.example", 443, "/in?x=1")


def test_a_name_with_any_private_answer_is_refused():
    def resolver(host, port):  # type: ignore[no-untyped-def]
        return ["93.184.216.34", "127.0.0.1"]

    with pytest.raises(outbound.UnsafeTarget, match="127.0.0.1"):
        outbound.check_url("http://mixed.example/", resolver=resolver)


@pytest.mark.parametrize("url", ["ftp://93.184.216.34/", "file:///etc/passwd", "http:///nohost",
                                 "http://user:pw@93.184.216.34/", "http://93.184.216.34:99999/"])
def test_only_plain_http_urls_are_accepted(url):
    with pytest.raises(outbound.UnsafeTarget):
        outbound.check_url(url)


def test_the_name_is_resolved_once_and_the_connection_goes_to_the_checked_address(httpserver):
    """DNS rebinding: a second lookup would answer something else; there is no second lookup."""
    answers = iter([["127.0.0.1"], ["10.9.9.9"]])
    calls = []

    def resolver(host, port):  # type: ignore[no-untyped-def]
        calls.append(host)
        return next(answers)

    seen = []
    httpserver.expect_request("/in").respond_with_handler(
        lambda r: seen.append(r.headers.get("Host")) or Response("ok"))
    url = f"http://rebind.example:{httpserver.port}/in"
    answer = outbound.request("POST", url, body=b"{}", allow_private=True, resolver=resolver)
    assert answer.status == 200 and answer.text == "ok"
    assert calls == ["rebind.example"]
    assert seen == [f"rebind.example:{httpserver.port}"]  # the name still travels in Host


def test_a_redirect_is_reported_not_followed(httpserver):
    from pytest_httpserver import HTTPServer

    second = HTTPServer(host="127.0.0.1", port=0)
    second.start()
    try:
        second.expect_request("/stolen").respond_with_data("got it")
        httpserver.expect_request("/in").respond_with_response(
            Response("", status=307, headers={"Location": second.url_for("/stolen")}))
        answer = outbound.request("POST", httpserver.url_for("/in"), body=b"{}", allow_private=True)
        assert answer.status == 307
        assert second.log == []
    finally:
        second.stop()


def test_an_unresolvable_name_is_retried_later():
    def resolver(host, port):  # type: ignore[no-untyped-def]
        raise RetriableConnectorError(f"cannot resolve {host}")

    with pytest.raises(RetriableConnectorError):
        outbound.request("GET", "http://down.example/", resolver=resolver)


def test_the_eventbrite_fetch_goes_through_the_guard(monkeypatch):
    monkeypatch.setattr(outbound, "system_resolver", lambda host, port: ["169.254.169.254"])
    with pytest.raises(HookRejected) as info:
        http_fetch("https://www.eventbriteapi.com/v3/orders/1/", "tok")
    assert info.value.status == 502 and "169.254.169.254" in info.value.message


# --- call_webhook: checked at publish and at send -------------------------------------------

def _hook_doc(url):  # type: ignore[no-untyped-def]
    return {"format_version": 1, "name": "Hook", "entry": {"policy": "every_time"},
            "starting_points": [{"id": "f", "type": "form_submitted", "params": {"form": "x"}}],
            "first_step": "hook",
            "steps": [{"id": "hook", "type": "action", "action": "call_webhook", "next": None,
                       "params": {"url": url}}]}


def _settings(harness, **settings):  # type: ignore[no-untyped-def]
    with harness.db.unit_of_work() as s:
        s.execute(update(Tenant).where(Tenant.id == harness.tenant_id).values(settings=settings))


@pytest.mark.parametrize("url", ["http://100.100.100.200/latest/meta-data", "http://[::ffff:127.0.0.1]/",
                                 "http://224.0.0.251:5353/"])
def test_publish_refuses_a_webhook_to_a_non_public_address(harness, url):
    with pytest.raises(DefinitionError) as info:
        harness.publish(_hook_doc(url))
    assert "steps[0].params.url" in info.value.errors


def test_publish_refuses_a_name_that_resolves_to_a_private_address(harness, monkeypatch):
    monkeypatch.setattr(outbound, "system_resolver", lambda host, port: ["10.0.0.7"])
    with pytest.raises(DefinitionError, match="10.0.0.7"):
        harness.publish(_hook_doc("https://intranet.example/hook"))


def test_send_rechecks_the_address_dns_gives_then(harness, monkeypatch):
    """Public at publish, loopback at send (rebinding between the two): the send refuses."""
    monkeypatch.setattr(outbound, "system_resolver", lambda host, port: ["93.184.216.34"])
    harness.publish(_hook_doc("http://flip.example/hook"))
    monkeypatch.setattr(outbound, "system_resolver", lambda host, port: ["127.0.0.1"])
    harness.event("form_submitted", "fay@example.com", key="x")
    harness.run()
    [row] = harness.outbox()
    assert row.status == "dead" and "127.0.0.1 is a private address" in row.last_error


def test_a_webhook_redirect_to_a_second_address_is_not_followed(harness, httpserver):
    from pytest_httpserver import HTTPServer

    second = HTTPServer(host="127.0.0.1", port=0)
    second.start()
    try:
        second.expect_request("/stolen").respond_with_data("got it")
        httpserver.expect_request("/in", method="POST").respond_with_response(
            Response("", status=307, headers={"Location": second.url_for("/stolen")}))
        _settings(harness, allow_private_webhooks=True)
        harness.publish(_hook_doc(httpserver.url_for("/in")))
        harness.event("form_submitted", "rex@example.com", key="x")
        harness.run()
        [row] = harness.outbox()
        assert row.status == "dead" and "redirect" in row.last_error
        assert len(httpserver.log) == 1 and second.log == []
    finally:
        second.stop()


def test_publish_refuses_send_email_where_the_host_cannot_send_email(harness, monkeypatch):
    monkeypatch.delenv("CRM_JOURNEYS_SMTP_URL", raising=False)
    with harness.db.unit_of_work() as s:
        s.execute(update(Tenant).where(Tenant.id == harness.tenant_id).values(connector="bottlecrm"))
    doc = _hook_doc("x")
    doc["steps"] = [{"id": "mail", "type": "action", "action": "send_email", "next": None,
                     "params": {"subject": "hi", "body": "hello"}}]
    doc["first_step"] = "mail"
    with pytest.raises(DefinitionError, match="send_email needs SMTP") as info:
        harness.publish(doc)
    assert list(info.value.errors) == ["steps[0].action"]
    _settings(harness, smtp_url="smtp://127.0.0.1:2525")
    harness.publish(doc)  # with SMTP it can


def test_an_ipv6_loopback_receiver_gets_a_bracketed_host_header(httpserver):
    """``[::1]`` literals (allowed by the admin setting) reach the server with a valid Host."""
    from pytest_httpserver import HTTPServer

    server = HTTPServer(host="::1", port=0)
    try:
        server.start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        server.expect_request("/in").respond_with_handler(lambda r: Response(r.headers.get("Host", "")))
        answer = outbound.request("GET", f"http://[::1]:{server.port}/in", allow_private=True)
        assert answer.status == 200 and answer.text == f"[::1]:{server.port}"
    finally:
        server.stop()

"""The SMS channel's pure parts: Twilio's signature, segment counting, E.164 numbers, keywords,
and the admin's Twilio settings through the integrations API."""

from __future__ import annotations

import pytest

from crm_journeys.sms.consent import keyword
from crm_journeys.sms.phone import BadNumber, contact_number, to_e164
from crm_journeys.sms.segments import count_segments
from crm_journeys.sms.signature import compute, valid

# Twilio's own published example (helper libraries' request-validator tests)
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
          "From": "+14158675309", "To": "+18005551212"}


def test_signature_matches_twilios_published_example():
    assert compute("12345", URL, PARAMS.items()) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert valid("12345", URL, PARAMS.items(), "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert valid("12345", "https://mycompany.com:443/myapp.php?foo=1&bar=2", PARAMS.items(),
                 "RSOYDt4T1cUTdK1PDd93/VVr8B8=")  # Twilio may sign with or without the default port


@pytest.mark.parametrize("token, url, params, given", [
    ("other", URL, PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
    ("12345", URL.replace("foo=1", "foo=2"), PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
    ("12345", URL, {**PARAMS, "Digits": "9"}, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
    ("12345", URL, PARAMS, None),
    ("", URL, PARAMS, compute("", URL, PARAMS.items())),
])
def test_signature_refuses_any_change(token, url, params, given):
    assert not valid(token, url, params.items(), given)


@pytest.mark.parametrize("text, encoding, segments", [
    ("", "GSM-7", 0),
    ("a" * 160, "GSM-7", 1),
    ("a" * 161, "GSM-7", 2),
    ("a" * 306, "GSM-7", 2),
    ("a" * 307, "GSM-7", 3),
    ("€" * 80, "GSM-7", 1),  # extension characters take two septets
    ("€" * 81, "GSM-7", 2),
    ("a" * 152 + "€" + "a" * 10, "GSM-7", 2),  # an escape pair is never split across parts
    ("Grüße aus Köln", "GSM-7", 1),
    ("Hi 👋", "UCS-2", 1),
    ("ç" * 70, "UCS-2", 1),  # lowercase ç is not in GSM 03.38 (only Ç is)
    ("ç" * 71, "UCS-2", 2),
    ("😀" * 35, "UCS-2", 1),  # surrogate pairs: two units each
    ("😀" * 36, "UCS-2", 2),
])
def test_segments(text, encoding, segments):
    count = count_segments(text)
    assert (count.encoding, count.segments) == (encoding, segments)


def test_numbers_are_read_with_the_contacts_country():
    assert to_e164("+44 20 7946 0958", None) == "+442079460958"
    assert contact_number({"phone": "030 12345678", "country": "Germany"}, None) == "+493012345678"
    assert contact_number({"phone": "(415) 555-2671", "country": "us"}, None) == "+14155552671"
    assert contact_number({"mobile": "0151 23456789", "phone": "x"}, "DE") == "+4915123456789"
    assert contact_number({"phone": "0151 23456789"}, "Germany") == "+4915123456789"
    with pytest.raises(BadNumber, match="no country code"):
        contact_number({"phone": "030 12345678"}, None)
    with pytest.raises(BadNumber, match=r"not a valid number for country code \+1"):
        to_e164("+1 555 0100", None)


@pytest.mark.parametrize("body, opt_out_type, word", [
    ("STOP", "", "stop"), (" stop. ", "", "stop"), ("Unsubscribe", "", "stop"), ("start", "", "start"),
    ("HELP", "", "help"), ("Please stop texting me", "", ""), ("Yes please", "", ""),
    ("arrêt", "STOP", "stop"),  # Advanced Opt-Out: Twilio says which keyword it matched
])
def test_keywords(body, opt_out_type, word):
    assert keyword(body, opt_out_type) == word


def test_admin_sets_twilio_and_never_reads_the_token_back(app, as_):
    api = as_("acme_admin")
    answer = api.patch("/integrations/twilio", json={"settings": {
        "account_sid": "AC" + "1" * 32, "auth_token": "tw-secret-token", "from_number": "+14155550100"}})
    assert answer.status_code == 200, answer.json
    listed = {i["service"]: i for i in api.get("/integrations").json}
    twilio = listed["twilio"]
    assert twilio["hook_url"].endswith("/twilio")
    settings = {s["name"]: s for s in twilio["settings"]}
    assert settings["auth_token"]["is_set"] is True and settings["auth_token"]["value"] is None
    assert settings["from_number"]["value"] == "+14155550100"
    assert "tw-secret-token" not in api.get("/integrations").text
    assert as_("acme_editor").get("/integrations").status_code == 403


def test_test_mode_shows_the_text_it_would_send_and_follows_a_made_up_reply():
    from datetime import UTC, datetime

    from crm_journeys.services.testmode import simulate
    from tests.test_sms import texting_journey

    report = simulate(texting_journey("go"), {"email": "ada@example.com", "first_name": "Ada",
                                              "fields_": {"phone": "0151 23456789", "country": "DE"}},
                      start=datetime(2026, 3, 2, 9, tzinfo=UTC), horizon="P3D",
                      events=[{"after": "PT5H", "type": "sms_replied", "key": "hello",
                               "properties": {"body": "Yes", "keyword": ""}}])
    text, tag = report["actions"]
    assert text["action"] == "send_sms" and text["status"] == "done"
    assert text["summary"] == "would text +491…89 (1 segment(s)): Hi Ada, reply YES to book a call"
    assert tag["step"] == "replied"


def test_a_connection_never_made_is_not_created_and_a_dropped_one_may_have_sent():
    import socket
    import threading

    from crm_journeys.sms import twilio

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    cfg = twilio.TwilioConfig(account_sid="AC1", auth_token="t", from_number="+14155550100",
                              api_url=f"http://127.0.0.1:{closed_port}")
    with pytest.raises(twilio.NotCreated):
        twilio.send(cfg, "+14155552671", "hi", None)

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def read_then_drop() -> None:
        conn, _ = server.accept()
        conn.recv(65536)  # the request arrived: Twilio may have acted on it
        conn.close()

    threading.Thread(target=read_then_drop, daemon=True).start()
    cfg = twilio.TwilioConfig(account_sid="AC1", auth_token="t", from_number="+14155550100",
                              api_url=f"http://127.0.0.1:{server.getsockname()[1]}")
    with pytest.raises(twilio.MaybeSent):
        twilio.send(cfg, "+14155552671", "hi", None)
    server.close()


def test_behind_a_proxy_the_signature_is_checked_against_the_public_address(app, as_):
    from tests.fakes.twilio import signature

    as_("acme_admin").patch("/integrations/twilio", json={"settings": {
        "account_sid": "AC" + "1" * 32, "auth_token": "tw-token", "public_url": "https://journeys.example.com/"}})
    slug = next(i for i in as_("acme_admin").get("/integrations").json if i["service"] == "twilio")["hook_url"]
    slug = slug.rsplit("/", 2)[-2]
    form = {"AccountSid": "AC" + "1" * 32, "From": "+14155552671", "To": "+14155550100", "Body": "hi",
            "MessageSid": "SM" + "9" * 32}
    public = f"https://journeys.example.com/hooks/{slug}/twilio"
    client = app.test_client()
    good = client.post(f"/hooks/{slug}/twilio", data=form, headers={"X-Twilio-Signature": signature("tw-token", public, form)})
    assert good.status_code == 200 and good.content_type.startswith("text/xml")
    other_account = {**form, "AccountSid": "AC" + "2" * 32}
    assert client.post(f"/hooks/{slug}/twilio", data=other_account, headers={
        "X-Twilio-Signature": signature("tw-token", public, other_account)}).status_code == 403
    wrong_url = client.post(f"/hooks/{slug}/twilio", data=form, headers={
        "X-Twilio-Signature": signature("tw-token", "https://evil.example.com/hooks/x/twilio", form)})
    assert wrong_url.status_code == 403
    assert client.post("/hooks/no-such-tenant/twilio", data=form).status_code == 404

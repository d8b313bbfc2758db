"""SMTP done right, against a real server (aiosmtpd): STARTTLS and implicit TLS by URL
scheme, no password in clear, one connection per batch, auth and recipient errors fatal
at once, transient ones retried."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from crm_journeys.storage.models import Tenant
from tests.mail_fixtures import Inbox, Login, self_signed, start

ONE_MAIL = {"format_version": 1, "name": "Hello", "entry": {"policy": "every_time"},
            "starting_points": [{"id": "f", "type": "form_submitted", "params": {"form": "x"}}],
            "first_step": "mail",
            "steps": [{"id": "mail", "type": "action", "action": "send_email", "next": None,
                       "params": {"subject": "Hello", "body": "Hi {{ contact.first_name }}", "kind": "transactional"}}]}


def _settings(harness, **settings):  # type: ignore[no-untyped-def]
    with harness.db.unit_of_work() as s:
        s.execute(update(Tenant).where(Tenant.id == harness.tenant_id).values(settings=settings))


def _send(harness, *emails):  # type: ignore[no-untyped-def]
    harness.publish(ONE_MAIL)
    for email in emails:
        harness.event("form_submitted", email, key="x")
    harness.run()
    return [r for r in harness.outbox() if r.action == "send_email"]


@pytest.fixture
def server(request):  # type: ignore[no-untyped-def]
    started = []

    def make(handler, **kw):  # type: ignore[no-untyped-def]
        controller = start(handler, **kw)
        started.append(controller)
        return controller
    yield make
    for controller in started:
        controller.stop()


def test_a_batch_of_emails_shares_one_connection(harness, server):
    inbox = Inbox()
    controller = server(inbox)
    _settings(harness, smtp_url=f"smtp://127.0.0.1:{controller.port}")
    rows = _send(harness, "a@example.com", "b@example.com", "c@example.com")
    assert [r.status for r in rows] == ["done"] * 3 and len(inbox.messages) == 3
    assert inbox.connections == 1


def test_starttls_with_login(harness, server, tmp_path):
    context, ca_file = self_signed(tmp_path)
    inbox, login = Inbox(), Login("mailer", "s3cret/pw")
    controller = server(inbox, tls_context=context, require_starttls=True, authenticator=login, auth_required=True)
    _settings(harness, smtp_url=f"smtp://mailer:s3cret%2Fpw@127.0.0.1:{controller.port}", smtp_ca_file=ca_file)
    [row] = _send(harness, "a@example.com")
    assert row.status == "done" and len(inbox.messages) == 1 and login.attempts == 1


def test_implicit_tls(harness, server, tmp_path):
    context, ca_file = self_signed(tmp_path)
    inbox, login = Inbox(), Login("mailer", "pw")
    controller = server(inbox, ssl_context=context, authenticator=login, auth_require_tls=False)
    _settings(harness, smtp_url=f"smtps://mailer:pw@127.0.0.1:{controller.port}", smtp_ca_file=ca_file)
    [row] = _send(harness, "a@example.com")
    assert row.status == "done" and len(inbox.messages) == 1 and login.attempts == 1


def test_an_untrusted_certificate_is_refused(harness, server, tmp_path):
    context, _ = self_signed(tmp_path)
    controller = server(Inbox(), ssl_context=context)
    _settings(harness, smtp_url=f"smtps://127.0.0.1:{controller.port}")
    [row] = _send(harness, "a@example.com")
    assert row.status == "dead" and "TLS" in row.last_error


def test_no_password_in_clear_unless_allowed_for_a_local_relay(harness, server):
    login = Login("mailer", "pw")
    inbox = Inbox()
    controller = server(inbox, authenticator=login, auth_require_tls=False)
    _settings(harness, smtp_url=f"smtp://mailer:pw@127.0.0.1:{controller.port}")
    [row] = _send(harness, "a@example.com")
    assert row.status == "dead" and row.attempts == 1 and "refusing to send the password" in row.last_error
    assert login.attempts == 0 and inbox.messages == []
    _settings(harness, smtp_url=f"smtp://mailer:pw@127.0.0.1:{controller.port}", smtp_allow_plaintext_auth=True)
    harness.runtime.forget_connector(harness.tenant_id)
    harness.event("form_submitted", "b@example.com", key="x")
    harness.run()
    assert len(inbox.messages) == 1 and login.attempts == 1


def test_wrong_password_is_fatal_at_once(harness, server, tmp_path):
    context, ca_file = self_signed(tmp_path)
    controller = server(Inbox(), tls_context=context, require_starttls=True, authenticator=Login("mailer", "right"),
                        auth_required=True)
    _settings(harness, smtp_url=f"smtp://mailer:wrong@127.0.0.1:{controller.port}", smtp_ca_file=ca_file)
    [row] = _send(harness, "a@example.com")
    assert (row.status, row.attempts) == ("dead", 1), row.last_error
    assert "authentication failed: 535" in row.last_error


def test_a_deferred_recipient_is_retried(harness, server):
    inbox = Inbox(refuse={"busy@example.com": "451 4.3.0 try again later"})
    controller = server(inbox)
    _settings(harness, smtp_url=f"smtp://127.0.0.1:{controller.port}")
    [row] = _send(harness, "busy@example.com")
    assert row.status == "pending" and row.attempts == 1 and "451" in row.last_error
    inbox.refuse.clear()
    harness.advance(minutes=10)
    assert [r.status for r in harness.outbox() if r.action == "send_email"] == ["done"]
    assert len(inbox.messages) == 1


class Killed(BaseException):
    """The worker dies here (nothing in the runtime catches a BaseException)."""


def _dies_after(real):  # type: ignore[no-untyped-def]
    def dying(*args, **kwargs):  # type: ignore[no-untyped-def]
        real(*args, **kwargs)
        raise Killed()
    return dying


def test_a_worker_that_dies_after_the_send_is_recorded_sends_once(harness, server, monkeypatch):
    from crm_journeys.actions import email

    inbox = Inbox()
    controller = server(inbox)
    _settings(harness, smtp_url=f"smtp://127.0.0.1:{controller.port}")
    monkeypatch.setattr(email, "_emit_sent", _dies_after(email._emit_sent))  # sent, recorded, not closed
    with pytest.raises(Killed):
        _send(harness, "a@example.com")
    monkeypatch.undo()
    harness.advance(minutes=1)  # the lease runs out; another attempt takes the row
    [row] = [r for r in harness.outbox() if r.action == "send_email"]
    assert row.status == "done" and "already sent" in row.result["summary"], row.result
    assert len(inbox.messages) == 1


def test_a_worker_that_dies_mid_send_marks_the_email_instead_of_sending_twice(harness, server, monkeypatch):
    from crm_journeys.actions import email
    from crm_journeys.runtime.action_errors import retry

    inbox = Inbox()
    controller = server(inbox)
    _settings(harness, smtp_url=f"smtp://127.0.0.1:{controller.port}")
    monkeypatch.setattr(email, "deliver", _dies_after(email.deliver))  # the server took it; then nothing
    with pytest.raises(Killed):
        _send(harness, "a@example.com")
    monkeypatch.undo()
    harness.advance(minutes=1)
    [row] = [r for r in harness.outbox() if r.action == "send_email"]
    assert row.status == "dead" and "may already have been delivered" in row.last_error, row.last_error
    assert len(inbox.messages) == 1  # marked, not sent again
    with harness.db.unit_of_work() as s:  # a person checked the mail log and asks again
        retry(s, harness.tenant_id, harness.clock.now(), "admin@example.com", ids=[row.id])
    harness.run()
    assert [r.status for r in harness.outbox() if r.action == "send_email"] == ["done"]
    assert len(inbox.messages) == 2


def test_a_failed_attempt_leaves_the_email_free_to_send(harness, server):
    inbox = Inbox(refuse={"busy@example.com": "451 4.3.0 try again later"})
    controller = server(inbox)
    _settings(harness, smtp_url=f"smtp://127.0.0.1:{controller.port}")
    _send(harness, "busy@example.com")
    inbox.refuse.clear()
    harness.advance(minutes=10)
    [row] = [r for r in harness.outbox() if r.action == "send_email"]
    assert row.status == "done" and "already sent" not in row.result["summary"]
    assert len(inbox.messages) == 1

"""Templates rendered with limits (item 7): a template that would run for ever, print
megabytes or overflow fails its action once, with the reason, and the worker goes on."""

from __future__ import annotations

import pytest

LOOP = "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}{% endfor %}{% endfor %}{% endfor %}"


def _mail_doc(body):  # type: ignore[no-untyped-def]
    return {"format_version": 1, "name": "Mail", "entry": {"policy": "every_time"},
            "starting_points": [{"id": "f", "type": "form_submitted", "params": {"form": "x"}}],
            "first_step": "mail",
            "steps": [{"id": "mail", "type": "action", "action": "send_email", "next": None,
                       "params": {"subject": "hi", "body": body}}]}


@pytest.mark.parametrize("body, reason", [
    (LOOP, "longer than 1 s"),
    ("{% for a in range(1000) %}{% for b in range(1000) %}0123456789{% endfor %}{% endfor %}", "longer than 256 KB"),
    ("{{ 'x' * 100000000 }}", "repeated text"),
    ("{{ range(100000000) | list }}", "range() of more than"),
    ("{{ (1e308 * 10) | int }}", "OverflowError"),
])
def test_a_runaway_template_fails_once_with_the_reason(harness, body, reason):
    harness.publish(_mail_doc(body))
    harness.event("form_submitted", "ola@example.com", key="x")
    harness.run()
    [row] = harness.outbox()
    assert row.status == "dead" and reason in row.last_error
    assert row.attempts == 1  # fatal: not retried eight times
    assert harness.crm_records("email") == []


def test_an_ordinary_template_still_renders(harness):
    harness.publish(_mail_doc("Hello {{ contact.first_name | default('there') }}{% for t in range(3) %}!{% endfor %}"))
    harness.event("form_submitted", "pia@example.com", key="x", contact={"first_name": "Pia"})
    harness.run()
    [row] = harness.outbox()
    assert row.status == "done"
    [record] = harness.crm_records("email")
    assert "Hello Pia!!!" in str(record.data)

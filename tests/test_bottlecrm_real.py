"""The BottleCRM connector against the real server (issue 13, items 1-10), each a regression
test of something observed on a real BottleCRM that the spec-built fake had hidden.

The host's own tables are the truth for what a write did (``bottlecrm.sql``)."""

from __future__ import annotations

import pytest

from crm_journeys.connectors.base import ActivitySpec, LeadSpec
from crm_journeys.connectors.contract import drain
from crm_journeys.connectors.mapping import parse_time
from crm_journeys.errors import FatalConnectorError
from tests.bottlecrm_people import Counted, Human, connector_for, unique_email

pytestmark = pytest.mark.bottlecrm


@pytest.fixture
def connector(bottlecrm, org):
    return connector_for(bottlecrm, org)


def test_install_discovers_the_user_id_the_feed_names(connector, org):
    """Item 2: the feed's ``user.id`` is the User id; the profile id is not it."""
    person = org.people["integration"]
    assert connector.settings["integration_user_id"] == person.user_id
    assert connector.settings["integration_profile_id"] == person.profile_id


def test_feed_envelope_and_echo_suppression(connector, human):
    """Items 1 and 2: the feed is an envelope; our own change is an echo, a human's is not."""
    _, cursor, _ = drain(connector, None, 100)
    ours, theirs = human.add_contact(email=unique_email()), human.add_contact(email=unique_email())
    connector.update_fields(ours, {"title": "Customer"}, "k-echo")
    human.change(theirs, title="Prospect")
    changed, cursor, _ = drain(connector, cursor, 100)
    flags = {c.external_id: c.echo for c in changed}
    assert flags[theirs] is False
    assert flags[ours] is True  # its last change was ours


def test_lead_lands_on_the_board_assigned_to_an_owner_given_by_email(bottlecrm, connector, human,
                                                                      org):
    """Items 3 and 7: status set (the board shows it) and the owner resolved from an email."""
    ref = human.add_contact(email=unique_email("lead"), first_name="Lena")
    sales = org.people["sales"]
    result = connector.create_lead(ref, LeadSpec(title="Hot", owner=sales.email, value=12),
                                   "k-lead-1")
    assert result.created
    [(status, email)] = bottlecrm.sql("SELECT status, email FROM lead WHERE id = :id",
                                      id=result.external_id)
    assert status == "assigned"
    owners = bottlecrm.sql("SELECT profile_id FROM lead_assigned_to WHERE lead_id = :id",
                           id=result.external_id)
    assert [str(o) for (o,) in owners] == [sales.profile_id]


def test_one_lead_per_email_is_reused_not_dead_lettered(bottlecrm, connector, human):
    """Item 4: a contact with a lead made by a person keeps it; a second step reuses it."""
    email = unique_email("dup")
    ref = human.add_contact(email=email)
    human.call("POST", "/api/leads/", json={"title": "By hand", "email": email.upper(),
                                            "status": "assigned", "source": "call"})
    first = connector.create_lead(ref, LeadSpec(title="Journey lead"), "k-dup-1")
    second = connector.create_lead(ref, LeadSpec(title="Another step"), "k-dup-2")
    assert not first.created and first.external_id == second.external_id
    assert bottlecrm.sql("SELECT count(*) FROM lead WHERE lower(email) = :e", e=email) == [(1,)]


def test_a_converted_lead_is_reported_not_created_again(bottlecrm):
    """Once converted, a lead leaves the lead list but keeps its email: a create answers
    400. The step is done without a write, saying so, never a raw 400 or a second lead.
    In an organisation of its own: the conversion's save of the contact leaves a feed
    entry newer than the contact's ``updated_at``, which later feed tests would read."""
    org = bottlecrm.new_org()
    connector, human = connector_for(bottlecrm, org), Human(bottlecrm, org.people["admin"])
    email = unique_email("won")
    ref = human.add_contact(email=email)
    lead = human.add_lead(email.upper(), "Signed by hand", first_name="Wendy", last_name="Won")
    account = human.convert_lead(lead)["account_id"]
    first = connector.create_lead(ref, LeadSpec(title="Journey lead"), "k-won-1")
    again = connector.create_lead(ref, LeadSpec(title="Journey lead"), "k-won-1")
    assert (first.created, first.external_id) == (False, lead)
    assert again == first
    assert "already converted" in first.detail and "not created again" in first.detail
    assert bottlecrm.sql("SELECT name FROM accounts WHERE id = :id", id=account) == [("Wendy Won",)]
    assert "to account 'Wendy Won'" in first.detail
    assert bottlecrm.sql("SELECT count(*) FROM lead WHERE lower(email) = :e", e=email) == [(1,)]


def test_lead_and_task_writes_take_a_fixed_number_of_requests(bottlecrm, connector, human):
    """Item 5: lookups do not grow with the organisation's leads or same-titled tasks."""
    others = [human.add_contact(email=unique_email("other")) for _ in range(3)]
    for i, other in enumerate(others):
        connector.create_activity(other, ActivitySpec("task", "Follow up", _due()), f"k-o-{i}")
        connector.create_lead(other, LeadSpec(title="Follow up"), f"k-ol-{i}")
    ref = human.add_contact(email=unique_email("count"))
    counted = Counted(connector)
    connector.create_lead(ref, LeadSpec(title="Follow up"), "k-count-lead")
    lead_requests = len(counted)
    counted.reset()
    connector.create_activity(ref, ActivitySpec("task", "Follow up", _due()), "k-count-task")
    task_requests = len(counted)
    counted.reset()
    connector.create_activity(ref, ActivitySpec("task", "Follow up", _due()), "k-count-task")
    replay_requests = len(counted)
    print(f"\nrequests per write on the real host: lead {lead_requests}, "
          f"task {task_requests}, task replay {replay_requests}")
    assert (lead_requests, task_requests, replay_requests) == (4, 3, 1)


def test_unknown_contact_fields_are_refused_never_reported_done(bottlecrm, connector, human, org):
    """Item 6: the server answers 200 to a key it does not know and writes nothing."""
    ref = human.add_contact(email=unique_email("patch"))
    for key in ("score", "language", "birthday"):
        with pytest.raises(FatalConnectorError, match=f"no field '{key}'"):
            connector.update_fields(ref, {key: "1"}, f"k-{key}")
    sales = org.people["sales"]
    connector.update_fields(ref, {"owner": sales.email, "city": "Leeds"}, "k-owner")
    assert connector.fetch_contact(ref).owner == sales.profile_id
    assert bottlecrm.sql("SELECT city FROM contacts WHERE id = :id", id=ref) == [("Leeds",)]


def test_an_unknown_owner_writes_nothing(bottlecrm, connector, human):
    """Item 7: refused before the task row exists, so no retry can 'find' it unassigned."""
    ref = human.add_contact(email=unique_email("owner"))
    spec = ActivitySpec("task", "Call back", _due(), owner="nobody@example.com")
    with pytest.raises(FatalConnectorError, match="no active user nobody@example.com"):
        connector.create_activity(ref, spec, "k-nobody")
    assert bottlecrm.sql("SELECT count(*) FROM task_contacts WHERE contact_id = :id", id=ref) == [(0,)]


def test_owner_picker_lists_the_organisations_active_people(connector, org):
    assert set(connector.picker_values("owners")) == {
        p.email for key, p in org.people.items() if key != "gone"}


def test_tags_match_by_slug(bottlecrm, connector, human):
    """Item 8: "vip" is the existing "VIP" (BottleCRM keys tags on their slug)."""
    human.tag("VIP Gold")
    ref = human.add_contact(email=unique_email("tag"))
    assert connector.add_tag(ref, "vip-gold", "k-t").detail == "changed"
    assert connector.fetch_contact(ref).tags == ["VIP Gold"]
    assert bottlecrm.sql("SELECT count(*) FROM tags WHERE slug = 'vip-gold'") == [(1,)]
    assert connector.remove_tag(ref, "VIP GOLD", "k-t2").detail == "changed"
    assert connector.fetch_contact(ref).tags == []


def test_feed_entry_of_a_deleted_editor_does_not_stop_sync(bottlecrm, connector, human):
    """Item 9: ``"user": null`` once the editor's profile is gone."""
    _, cursor, _ = drain(connector, None, 100)
    ref = human.add_contact(email=unique_email("orphan"))
    bottlecrm.sql("UPDATE activity SET user_id = NULL WHERE entity_id = :id RETURNING id", id=ref)
    changed, _, _ = drain(connector, cursor, 100)
    assert [(c.external_id, c.echo) for c in changed] == [(ref, False)]


def test_deactivated_contacts_are_deleted_on_every_path(connector, human):
    """Item 10: the feed path and the scan path agree; a full scan omits them."""
    _, cursor, _ = drain(connector, None, 100)
    ref = human.add_contact(email=unique_email("gone"))
    human.change(ref, is_active=False)
    changed, cursor, _ = drain(connector, cursor, 100)
    assert [(c.external_id, c.deleted) for c in changed] == [(ref, True)]
    assert connector.fetch_contact(ref) is None
    everyone, _, _ = drain(connector, None, 100)
    assert ref not in {c.external_id for c in everyone}


def test_first_poll_after_a_full_scan_fetches_nothing_already_read(connector, human):
    """Item 10: feed timestamps come a moment after the save; the scan's copy counts."""
    for _ in range(3):
        human.add_contact(email=unique_email("scan"))
    _, cursor, _ = drain(connector, None, 100)
    counted = Counted(connector)
    changed, _, _ = drain(connector, cursor, 100)
    assert changed == []
    assert [c for c in counted.calls if c[1].startswith("/api/contacts/")] == []


def test_url_ending_in_api_is_accepted(bottlecrm, org):
    connector = connector_for(bottlecrm, org, url=bottlecrm.url + "/api/")
    assert connector.whoami()["role"] == "ADMIN"


def test_signup_date_is_the_created_date(bottlecrm, connector, human):
    ref = human.add_contact(email=unique_email("signup"))
    contact = connector.fetch_contact(ref)
    [(created,)] = bottlecrm.sql("SELECT created_at FROM contacts WHERE id = :id", id=ref)
    assert parse_time(contact.signup_date) == created.replace(microsecond=0)
    assert contact.as_fields()["signup_date"] == contact.signup_date


def _due():
    from datetime import UTC, datetime, timedelta
    return datetime.now(UTC) + timedelta(days=1)

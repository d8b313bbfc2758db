"""The five worked journeys of FEATURES.md section 4, end to end through the real runtime
on a virtual clock: events in, decisions by durable_rules, rows out, CRM records written."""

from __future__ import annotations


def test_welcome_opened_gets_promo(harness):
    harness.publish("welcome_promo.json")
    harness.event("subscribed", "ada@example.com", key="newsletter", contact={"first_name": "Ada"})
    harness.run()
    assert harness.actions_for("ada@example.com") == [("welcome", "send_email")]
    assert [e.data["subject"] for e in harness.crm_records("email")] == ["Welcome, Ada!"]

    harness.advance(days=1)
    harness.event("email_opened", "ada@example.com", key="welcome")
    harness.run()
    assert harness.actions_for("ada@example.com") == [("welcome", "send_email")]  # wait and check: not yet

    harness.advance(days=2, minutes=1)
    assert harness.actions_for("ada@example.com") == [("welcome", "send_email"), ("promo", "send_email")]
    assert harness.branches("opened_welcome") == ["yes"]
    assert [i.status for i in harness.instances()] == ["completed"]


def test_welcome_not_opened_gets_reminder(harness):
    harness.publish("welcome_promo.json")
    harness.event("subscribed", "bob@example.com", key="newsletter")
    harness.run()
    harness.advance(days=3, minutes=1)
    assert harness.actions_for("bob@example.com") == [("welcome", "send_email"), ("reminder", "send_email")]
    assert harness.branches("opened_welcome") == ["no"]


def test_welcome_enters_once_and_exit_rule_stops_it(harness):
    harness.publish("welcome_promo.json")
    harness.event("subscribed", "cy@example.com", key="newsletter")
    harness.run()
    harness.event("unsubscribed", "cy@example.com", key="newsletter")
    harness.run()
    harness.event("subscribed", "cy@example.com", key="newsletter")
    harness.run()
    harness.advance(days=4)
    assert harness.actions_for("cy@example.com") == [("welcome", "send_email")]
    assert [(i.status, i.outcome) for i in harness.instances()] == [("exited", "exit rule unsubscribed")]


def test_welcome_react_variant_moves_at_once(harness):
    """Variant with 'react to an event': opening and clicking after one day takes the YES
    branch right then, not when the three days are over."""
    harness.publish("welcome_promo_react.json")
    harness.event("subscribed", "dee@example.com", key="newsletter")
    harness.run()
    harness.advance(days=1)
    harness.event("email_opened", "dee@example.com", key="welcome")
    harness.run()
    assert [s for s, _ in harness.actions_for("dee@example.com")] == ["welcome"]
    harness.event("email_clicked", "dee@example.com", key="welcome", url="https://shop.example/")
    harness.run()
    assert [s for s, _ in harness.actions_for("dee@example.com")] == ["welcome", "promo"]
    assert harness.branches("clicked_welcome") == ["yes"]
    harness.advance(days=3)  # the cancelled timeout must not fire a NO branch later
    assert harness.branches("clicked_welcome") == ["yes"]


def test_post_sale_first_second_and_repeat_purchase(harness):
    harness.publish("post_sale_followup.json")
    for day in range(3):
        harness.event("purchase", "eve@example.com", order_id=f"o{day}", products=["beans"])
        harness.run()
        harness.advance(days=1)
    assert [s for s, _ in harness.actions_for("eve@example.com")] == [
        "tag_first", "thank_first",
        "untag_first", "thank_second", "tag_repeat",
        "thank_repeat", "score",
    ]
    assert harness.branches("is_repeat") == ["no", "no", "yes"]
    assert harness.branches("is_first") == ["no", "yes"]
    with harness.db.unit_of_work() as s:
        from sqlalchemy import select

        from crm_journeys.storage.models import SandboxContact

        contact = s.scalar(select(SandboxContact).where(SandboxContact.email == "eve@example.com"))
        assert contact.tags == ["repeat customer"]
        assert contact.fields["score"] == 10


def test_contoso_lead_nurture_creates_lead_and_task(harness):
    harness.publish("contoso_lead_nurture.json")
    harness.event("segment_joined", "fay@example.com", key="coffee_prospects",
                  contact={"first_name": "Fay"})
    harness.run()
    harness.advance(hours=5)
    harness.event("email_clicked", "fay@example.com", key="contoso_espresso_launch",
                  url="https://contoso.example/products/espresso")
    harness.run()
    harness.advance(hours=1)
    harness.event("page_visited", "fay@example.com", key="https://contoso.example/products/espresso",
                  url="https://contoso.example/products/espresso")
    harness.run()
    harness.advance(days=1)
    harness.event("form_submitted", "fay@example.com", key="more_information")
    harness.run()
    assert [s for s, _ in harness.actions_for("fay@example.com")] == [
        "launch_email", "send_material", "create_lead", "follow_up"]
    leads, tasks = harness.crm_records("lead"), harness.crm_records("task")
    assert [lead.data["title"] for lead in leads] == ["Contoso espresso machine: more information requested"]
    assert len(tasks) == 1
    task = tasks[0].data
    assert task["owner"] in ("sales.east@contoso.example", "sales.west@contoso.example")
    assert task["subject"] == "Call Fay about the espresso machine"
    # Entered Tuesday 2026-03-03 ~15:00 UTC; two business days later is Thursday.
    assert task["due_at"].startswith("2026-03-05")


def test_contoso_no_click_times_out_and_ends(harness):
    harness.publish("contoso_lead_nurture.json")
    harness.event("segment_joined", "gil@example.com", key="coffee_prospects")
    harness.run()
    harness.advance(days=8)
    assert [s for s, _ in harness.actions_for("gil@example.com")] == ["launch_email"]
    assert harness.branches("clicked_product") == ["no"]
    assert [i.status for i in harness.instances()] == ["completed"]


def test_multi_start_filtered_by_two_tags(harness):
    harness.publish("multi_start_filtered.json")
    # Has both tags when the second is added: enters through "tag added".
    harness.snapshot("c1", "hal@example.com", 1, tags=["Kunde"])
    harness.snapshot("c1", "hal@example.com", 2, tags=["Kunde", "Instagram Follower"])
    # Only one tag: the email-opened starting point fires, the filter keeps it out.
    harness.snapshot("c2", "ivy@example.com", 1, tags=["Instagram Follower"])
    harness.event("email_opened", "ivy@example.com", key="spring_newsletter")
    # Tagged Instagram first (filter fails: no Kunde yet), then Kunde (not a starting
    # point): only the email opened afterwards lets him in.
    harness.snapshot("c3", "jon@example.com", 1, tags=["Instagram Follower"])
    harness.snapshot("c3", "jon@example.com", 2, tags=["Instagram Follower", "Kunde"])
    harness.event("email_opened", "jon@example.com", key="spring_newsletter")
    harness.run()
    assert [s for s, _ in harness.actions_for("hal@example.com")] == ["offer", "mark"]
    assert harness.actions_for("ivy@example.com") == []
    assert [s for s, _ in harness.actions_for("jon@example.com")] == ["offer", "mark"]
    with harness.db.unit_of_work() as s:
        from sqlalchemy import select

        from crm_journeys.storage.models import StepLog

        entries = s.scalars(select(StepLog.branch).where(StepLog.kind == "entered").order_by(StepLog.id)).all()
    assert sorted(entries) == ["opened", "tagged"]


def test_birthday_greetings_every_year_for_german_speakers(harness):
    harness.publish("birthday_greetings.json")
    harness.snapshot("c1", "kai@example.de", 1, first_name="Kai", language="de", birthday="1990-03-15")
    harness.snapshot("c2", "liv@example.com", 1, first_name="Liv", language="en", birthday="1991-03-16")
    harness.run()
    harness.advance(days=400)
    sent = [(r.data["subject"], r.created_at.isoformat()) for r in harness.crm_records("email")]
    # 09:00 in Berlin: CET (UTC+1) on 15 March 2026 and 2027.
    assert sent == [("Alles Gute zum Geburtstag, Kai!", "2026-03-15T08:00:00+00:00"),
                    ("Alles Gute zum Geburtstag, Kai!", "2027-03-15T08:00:00+00:00")]
    assert harness.actions_for("liv@example.com") == []

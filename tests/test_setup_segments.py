"""Saved segments set up without code: the REST endpoints and the pages (list, the AND/OR
form, members page by page, delete refused while a published journey uses the segment),
tenant scoping and roles, on SQLite and PostgreSQL."""

from __future__ import annotations

import re

from sqlalchemy import select

from crm_journeys.services.condition_words import describe
from crm_journeys.storage.journey_models import Segment
from crm_journeys.storage.models import Contact
from tests.formscrape import form_fields
from tests.sp_helpers import journey, sp
from tests.test_web_ui import sign_in

VIPS = {"op": "has_tag", "value": "VIP"}


def add_contacts(app, tenant="acme", n_vip=2, n_other=1, prefix="c"):
    """Contacts as the mirror holds them (what a sync or events would have left)."""
    state = app.extensions["crm_journeys"]
    tenant_id = app.config["TEST_TENANTS"][tenant]
    with state.db.unit_of_work() as s:
        for i in range(n_vip + n_other):
            s.add(Contact(tenant_id=tenant_id, external_id=f"{prefix}{i}", email=f"{prefix}{i}@{tenant}.example",
                          fields={"language": "de" if i % 2 == 0 else "en", "score": i * 10},
                          tags=["VIP"] if i < n_vip else [], groups=[], segments=[], activity={},
                          updated_at=state.runtime.clock.now()))


def stored_members(app, name, tenant="acme"):
    state = app.extensions["crm_journeys"]
    with state.db.unit_of_work() as s:
        rows = s.scalars(select(Contact).where(Contact.tenant_id == app.config["TEST_TENANTS"][tenant])
                         .order_by(Contact.id))
        return [c.email for c in rows if name in (c.segments or [])]


def publish(api, document):
    jid = api.post("/journeys", json={"document": document}).json["id"]
    published = api.post(f"/journeys/{jid}/publish", json={})
    assert published.status_code == 200, published.json
    return jid


# --- REST API ---------------------------------------------------------------------------

def test_segment_crud_over_the_api_keeps_membership(app, as_):
    add_contacts(app, n_vip=3, n_other=2)
    api = as_("acme_editor")
    created = api.post("/segments", json={"name": "VIPs", "condition": VIPS})
    assert created.status_code == 201, created.json
    seg = created.json
    assert seg["member_count"] == 3 and seg["summary"] == "has tag “VIP”" and seg["used_by"] == []
    assert stored_members(app, "VIPs") == ["c0@acme.example", "c1@acme.example", "c2@acme.example"]

    listed = api.get("/segments")
    assert listed.headers["X-Total-Count"] == "1" and [s["name"] for s in listed.json] == ["VIPs"]
    page = api.get(f"/segments/{seg['id']}/members?per_page=2&page=2")
    assert page.headers["X-Total-Count"] == "3" and [c["email"] for c in page.json] == ["c2@acme.example"]

    german_vips = {"all": [VIPS, {"op": "eq", "field": "language", "value": "de"}]}
    changed = api.put(f"/segments/{seg['id']}", json={"condition": german_vips})
    assert changed.status_code == 200 and changed.json["member_count"] == 2
    assert changed.json["summary"] == "has tag “VIP” and language is “de”"
    assert stored_members(app, "VIPs") == ["c0@acme.example", "c2@acme.example"]
    assert api.get(f"/segments/{seg['id']}").json["condition"] == german_vips

    taken = api.post("/segments", json={"name": "VIPs", "condition": VIPS})
    assert taken.status_code == 409 and taken.json["code"] == "segment_exists" and "name" in taken.json["errors"]

    assert api.delete(f"/segments/{seg['id']}").json == {"deleted": seg["id"]}
    assert api.get(f"/segments/{seg['id']}").status_code == 404
    assert stored_members(app, "VIPs") == []


def test_invalid_segments_are_refused_with_the_field_named(as_):
    api = as_("acme_editor")
    bad = api.post("/segments", json={"name": "Scores", "condition": {"all": [
        {"op": "gte", "field": "score", "value": "lots"}, {"op": "has_tag", "value": "VIP"}]}})
    assert bad.status_code == 422 and bad.json["code"] == "invalid_request"
    assert set(bad.json) == {"code", "status", "message", "errors"}
    assert list(bad.json["errors"]) == ["condition.all[0].value"]
    unknown = api.post("/segments", json={"name": "X", "condition": {"op": "is_vip"}})
    assert "condition.op" in unknown.json["errors"]
    assert api.post("/segments", json={"name": "X", "condition": {}}).json["errors"] == {
        "condition": ["Add at least one test: which contacts belong to this segment?"]}
    selfish = api.post("/segments", json={"name": "X", "condition": {"op": "in_segment", "value": "X"}})
    assert selfish.status_code == 422 and "itself" in selfish.json["errors"]["condition"][0]
    missing = api.post("/segments", json={"condition": VIPS, "colour": "red"})
    assert missing.status_code == 422 and set(missing.json["errors"]) == {"name", "colour"}


def test_segments_are_tenant_scoped_and_viewers_only_read(app, as_):
    add_contacts(app)
    add_contacts(app, tenant="globex", n_vip=1, n_other=0, prefix="g")
    seg_id = as_("acme_editor").post("/segments", json={"name": "VIPs", "condition": VIPS}).json["id"]
    globex = as_("globex_editor")
    for call in (globex.get(f"/segments/{seg_id}"), globex.get(f"/segments/{seg_id}/members"),
                 globex.put(f"/segments/{seg_id}", json={"condition": VIPS}), globex.delete(f"/segments/{seg_id}")):
        assert call.status_code == 404 and call.json["code"] == "not_found"
    assert globex.get("/segments").json == []
    mine = globex.post("/segments", json={"name": "VIPs", "condition": VIPS})  # same name, other tenant
    assert mine.status_code == 201 and mine.json["member_count"] == 1
    assert stored_members(app, "VIPs") == ["c0@acme.example", "c1@acme.example"]

    viewer = as_("acme_viewer")
    assert [s["member_count"] for s in viewer.get("/segments").json] == [2]
    assert viewer.get(f"/segments/{seg_id}/members").status_code == 200
    for call in (viewer.post("/segments", json={"name": "Mine", "condition": VIPS}),
                 viewer.put(f"/segments/{seg_id}", json={"condition": VIPS}), viewer.delete(f"/segments/{seg_id}")):
        assert call.status_code == 403 and call.json["code"] == "forbidden"


def test_delete_is_refused_while_a_published_journey_uses_the_segment(app, as_):
    api = as_("acme_editor")
    seg_id = api.post("/segments", json={"name": "VIPs", "condition": VIPS}).json["id"]
    filtered = journey([sp("tag_added", {"tag": "promo"}, filter_={"op": "in_segment", "value": "VIPs"})])
    filtered["name"] = "Promo for VIPs"
    jid = publish(api, filtered)
    draft = journey([sp("joined_segment", {"segment": "VIPs"})])
    draft["name"] = "Still a draft"
    api.post("/journeys", json={"document": draft})
    assert [(u["name"], u["published"]) for u in api.get(f"/segments/{seg_id}").json["used_by"]] == [
        ("Promo for VIPs", True), ("Still a draft", False)]

    refused = api.delete(f"/segments/{seg_id}")
    assert refused.status_code == 409 and refused.json["code"] == "segment_in_use"
    assert "“Promo for VIPs”" in refused.json["message"] and "Still a draft" not in refused.json["message"]
    assert refused.json["errors"] == {"journeys": [f"“Promo for VIPs” (#{jid}, live)"]}

    editor = sign_in(app, "editor@acme.example")
    editor.get(f"/segments/{seg_id}")
    assert editor.post(f"/segments/{seg_id}/delete").status_code == 302
    page = editor.get(f"/segments/{seg_id}")
    assert page.status_code == 200 and "used by published journeys: “Promo for VIPs”" in page.text

    assert api.post(f"/journeys/{jid}/archive").status_code == 200
    assert api.delete(f"/segments/{seg_id}").status_code == 200


# --- pages ------------------------------------------------------------------------------

def test_segment_form_list_and_members_pages(app):
    add_contacts(app, n_vip=27, n_other=3)
    editor = sign_in(app, "editor@acme.example")
    assert 'href="/segments"' in editor.get("/journeys").text
    form = editor.get("/segments/new")
    assert form.status_code == 200 and 'name="condition.r0.op"' in form.text and "any of these (OR)" in form.text
    created = editor.post("/segments/new", {
        "name": "German VIPs", "condition.mode": "all",
        "condition.r0.field": "", "condition.r0.op": "has_tag", "condition.r0.value": "VIP",
        "condition.r1.field": "language", "condition.r1.op": "eq", "condition.r1.value": "de"})
    assert created.status_code == 302, created.text
    page = editor.get(created.headers["Location"])
    assert "14 contacts match it now." in page.text and '<span class="badge" id="member-count">14 members' in page.text
    assert "Condition: has tag “VIP” and language is “de”." in page.text
    assert "c26@acme.example" in page.text and "c1@acme.example" not in page.text
    assert "Page 1 of 1 (14 members)" not in page.text and "14 members" in page.text

    listing = editor.get("/segments")
    row = re.search(r'<tr data-segment="German VIPs">.*?</tr>', listing.text, re.S).group(0)
    assert "has tag “VIP” and language is “de”" in row and "<td class=\"num\" data-members>14</td>" in row

    # edit through the same form the page shows: OR instead of AND, members rebuilt
    fields = form_fields(page.text, "segment-form")
    fields["condition.mode"] = "any"
    saved = editor.post(created.headers["Location"], fields)
    assert saved.status_code == 302
    page = editor.get(created.headers["Location"])
    assert "28 contacts match it now." in page.text and "Page 1 of 2 (28 members)" in page.text
    second = editor.get(created.headers["Location"] + "?page=2")
    assert "Page 2 of 2" in second.text and second.text.count("Journeys and timeline") == 3


def test_segment_form_shows_each_error_next_to_its_field(app):
    editor = sign_in(app, "editor@acme.example")
    editor.get("/segments/new")
    empty = editor.post("/segments/new", {"name": "", "condition.mode": "all"})
    assert empty.status_code == 422
    assert re.search(r'class="field has-error">\s*<label for="f-name">.*?Give the segment a name\.', empty.text, re.S)
    assert "Add at least one test" in empty.text
    bad = editor.post("/segments/new", {"name": "Big spenders", "condition.mode": "all",
                                        "condition.r0.field": "score", "condition.r0.op": "gte",
                                        "condition.r0.value": "lots"})
    assert bad.status_code == 422
    row = re.search(r'<div class="row cond-row has-error" data-path="all\[0\]">.*?</div>\s*<div class="row-errors">(.*?)</div>\s*</div>',
                    bad.text, re.S)
    assert row and 'value="lots"' in row.group(0) and "Operator gte needs a number or an ISO date" in row.group(1)
    assert 'value="Big spenders"' in bad.text  # what was typed stays
    editor.post("/segments/new", {"name": "Twice", "condition.r0.op": "has_tag", "condition.r0.value": "x"})
    twice = editor.post("/segments/new", {"name": "Twice", "condition.r0.op": "has_tag", "condition.r0.value": "y"})
    assert twice.status_code == 422 and "There is already a segment named “Twice”." in twice.text


def test_segment_pages_are_tenant_scoped_and_viewers_cannot_write(app, as_):
    add_contacts(app)
    seg_id = as_("acme_editor").post("/segments", json={"name": "VIPs", "condition": VIPS}).json["id"]
    globex = sign_in(app, "editor@globex.example")
    assert globex.get(f"/segments/{seg_id}").status_code == 404
    assert globex.post(f"/segments/{seg_id}", {"condition.r0.op": "is_set", "condition.r0.field": "x"}).status_code == 404
    assert globex.post(f"/segments/{seg_id}/delete").status_code == 404
    assert "VIPs" not in globex.get("/segments").text
    viewer = sign_in(app, "viewer@acme.example")
    page = viewer.get(f"/segments/{seg_id}")
    assert page.status_code == 200 and "c0@acme.example" in page.text and "Save segment" not in page.text
    assert viewer.get("/segments/new").status_code == 403
    assert viewer.post(f"/segments/{seg_id}", {"condition.r0.op": "is_set", "condition.r0.field": "x"}).status_code == 403
    assert viewer.post(f"/segments/{seg_id}/delete").status_code == 403
    assert viewer.client.post(f"/segments/{seg_id}/delete").status_code == 400  # no CSRF token
    with app.extensions["crm_journeys"].db.unit_of_work() as s:
        assert s.scalar(select(Segment.condition).where(Segment.id == seg_id)) == VIPS


def test_saved_segments_are_offered_in_the_builder(app, as_):
    as_("acme_editor").post("/segments", json={"name": "VIPs", "condition": VIPS})
    editor = sign_in(app, "editor@acme.example")
    builder = editor.post("/journeys/new", {"name": "Segment journey"}).headers["Location"]
    editor.get(builder)
    point = editor.post(builder + "/starting-points", {"type": "joined_segment"}).headers["Location"]
    page = editor.get(point).text
    assert re.search(r'<datalist id="picker-segments">.*<option value="VIPs">.*</datalist>', page, re.S)
    # both "who enters" boxes show their default (ticked), and unticking one is kept
    assert 'name="params.existing_members" value="1" checked' in page
    assert 'name="params.new_members" value="1" checked' in page
    assert editor.post(point, {"params.segment": "VIPs", "params.new_members": "1"}).status_code == 302
    jid = int(builder.rsplit("/", 1)[1])
    assert as_("acme_viewer").get(f"/journeys/{jid}").json["draft"]["starting_points"][0]["params"] == {
        "segment": "VIPs", "existing_members": False, "new_members": True}
    assert 'name="params.existing_members" value="1" >' in editor.get(point).text


def test_conditions_in_plain_words():
    assert describe(None) == "no condition"
    assert describe({"any": [{"op": "eq", "field": "country", "value": "DE"},
                             {"all": [{"op": "gte", "field": "score", "value": 50},
                                      {"op": "not_has_tag", "value": "churned"}]}]}) == \
        "country is “DE” or (score is at least 50 and does not have tag “churned”)"
    assert describe({"op": "within_last_days", "field": "signed_up", "days": 30}) == \
        "signed_up is within the last 30 days"
    assert describe({"not": {"op": "is_set", "field": "phone"}}) == "not (phone is set)"
    assert describe({"op": "in", "field": "plan", "value": ["gold", 3]}) == "plan is one of “gold”, 3"

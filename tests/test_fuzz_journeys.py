"""A Hypothesis strategy of malformed journey documents (item 8): a valid example with
parts replaced by wrong types, out-of-range numbers and durations, odd text and deep
nesting. Saving and publishing through the API never answers 5xx, and
``crm-journeys validate`` never prints a traceback."""

from __future__ import annotations

import json
import uuid
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from crm_journeys.app import create_app
from crm_journeys.auth.accounts import create_api_token
from crm_journeys.cli import main
from crm_journeys.clock import VirtualClock
from crm_journeys.runtime.tenants import create_tenant
from tests.conftest import START
from tests.web_fixtures import welcome_doc

ODD_TEXT = st.sampled_from(["", " ", "P99999999999999W", "P999999999D", "-P1D", "PT0S", "P1Y", "x" * 300,
                            "{{ contact.email }}", "{% for a in range(9) %}", "\u202e", "é", "null", "__class__"])
FIELDS = ["duration", "id", "next", "first_step", "name", "op", "value", "action", "type", "policy",
          "time_zone", "subject", "body"]  # the fields whose values journeys interpret
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=False), ODD_TEXT, st.text(max_size=20))


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"op": "and", "conditions": [value]}
    return value


JUNK = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(ODD_TEXT | st.text(max_size=8), inner, max_size=3)),
                    max_leaves=8) | st.integers(min_value=30, max_value=200).map(_deep)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += _paths(child, (*prefix, index))
    return out


def _with_all(doc: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """``doc`` with every member named ``key`` set to ``value`` (the known nasty cases)."""
    for path in _paths(doc):
        if path and path[-1] == key:
            _at(doc, path[:-1])[key] = value
    return doc


def _at(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def malformed_journeys(draw: Any) -> dict[str, Any]:
    """The welcome example with one to three of its parts replaced by junk."""
    doc = welcome_doc()
    paths = [p for p in _paths(doc) if p]
    leaves = [p for p in paths if not isinstance(_at(doc, p), dict | list)]  # durations, ids, names...
    keys = sorted({str(p[-1]) for p in leaves if isinstance(p[-1], str)})
    if draw(st.booleans()):  # every field of one name at once: all durations, all "next"s...
        key, value = draw(st.sampled_from(FIELDS) | st.sampled_from(keys)), draw(ODD_TEXT | SCALARS)
        for path in leaves:
            if path[-1] == key:
                _at(doc, path[:-1])[key] = value
        return doc
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(leaves) | st.sampled_from(paths))
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = draw(ODD_TEXT | JUNK)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this part
    return doc


def test_malformed_journeys_never_cause_a_5xx_or_a_traceback(tmp_path):
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "CRM_JOURNEYS_DATABASE_URL": f"sqlite:///{tmp_path / 'cj.db'}"},
                     clock=VirtualClock(START))
    with app.extensions["crm_journeys"].db.unit_of_work() as s:
        tenant = create_tenant(s, f"fuzz-{uuid.uuid4().hex[:6]}", "Fuzz", START)
        headers = {"Authorization": f"Bearer {create_api_token(s, tenant.id, 'fuzz', role='admin')}"}
    client, runner, doc_file = app.test_client(), CliRunner(), tmp_path / "doc.json"

    @given(doc=malformed_journeys())
    @example(doc=_with_all(welcome_doc(), "duration", "P99999999999999W"))
    @example(doc=_with_all(welcome_doc(), "duration", "P999999999D"))
    @example(doc=_with_all(welcome_doc(), "name", "n" * 5000))
    @example(doc=_with_all(welcome_doc(), "condition", _deep(300)))
    @example(doc={**welcome_doc(), "steps": [{"id": f"s{i}", "type": "exit"} for i in range(5000)]})
    @settings(max_examples=120, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(doc: dict[str, Any]) -> None:
        created = client.post("/api/journeys", json={"document": doc}, headers=headers)
        assert created.status_code < 500 and "Traceback" not in created.text, created.text[:500]
        if created.status_code == 201:
            published = client.post(f"/api/journeys/{created.get_json()['id']}/publish", json={}, headers=headers)
            assert published.status_code < 500 and "Traceback" not in published.text, published.text[:500]
        doc_file.write_text(json.dumps(doc))
        result = runner.invoke(main, ["validate", str(doc_file)])
        assert isinstance(result.exception, SystemExit | None), repr(result.exception)
        assert "Traceback" not in result.output

    try:
        check()
    finally:
        app.extensions["crm_journeys"].db.dispose()

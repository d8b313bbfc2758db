"""Lowers conditions of the closed operator set to durable_rules' JSON test language.

Pure: data in, data out. Facts are addressed the way ``runtime.facts`` lays out a message:
``contact.f.<field>`` (values), ``contact.d.<field>`` (dates as epoch seconds),
``contact.tags`` / ``groups`` / ``segments`` (lists), ``contact.act.<kind>.<email>`` (epoch
of the last sent/opened/clicked), ``contact.x.<id>`` (booleans for text tests, which
durable_rules' own regex dialect cannot express faithfully), ``event.<prop>`` and ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from crm_journeys.definition.dates import is_number as _is_number
from crm_journeys.definition.dates import to_epoch
from crm_journeys.definition.model import Condition, Group, Leaf

DAY = 86400
TEXT_OPS = ("contains", "not_contains", "starts_with")
DATE_OPS = ("date_before", "date_after", "within_last_days", "within_next_days")
ACTIVITY_KIND = {"email_sent": "sent", "email_opened": "opened", "email_clicked": "clicked"}
SET_FIELD = {
    "has_tag": "tags", "not_has_tag": "tags", "in_group": "groups", "not_in_group": "groups",
    "in_segment": "segments", "not_in_segment": "segments",
}


@dataclass
class FactNeeds:
    """What a compiled journey reads, so the runtime puts only that into each message."""

    fields: set[str] = field(default_factory=set)
    date_fields: set[str] = field(default_factory=set)
    number_fields: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    segments: set[str] = field(default_factory=set)
    activity: set[tuple[str, str]] = field(default_factory=set)
    text_tests: dict[str, list[Any]] = field(default_factory=dict)  # id -> [path, op, value]
    random_steps: list[str] = field(default_factory=list)
    jump_steps: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "fields": sorted(self.fields), "date_fields": sorted(self.date_fields),
            "number_fields": sorted(self.number_fields),
            "tags": sorted(self.tags), "groups": sorted(self.groups),
            "segments": sorted(self.segments),
            "activity": sorted([list(a) for a in self.activity]),
            "text_tests": self.text_tests, "random_steps": self.random_steps,
            "jump_steps": self.jump_steps,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FactNeeds:
        return cls(
            fields=set(data["fields"]), date_fields=set(data["date_fields"]),
            number_fields=set(data.get("number_fields", [])),
            tags=set(data["tags"]), groups=set(data["groups"]), segments=set(data["segments"]),
            activity={(k, e) for k, e in data["activity"]}, text_tests=data["text_tests"],
            random_steps=list(data["random_steps"]), jump_steps=list(data["jump_steps"]),
        )

    def key_count(self) -> int:
        """How many keys a message of this journey can carry (durable_rules caps ~250)."""
        return (len(self.fields) + len(self.date_fields) + len(self.number_fields) + len(self.activity)
                + len(self.text_tests) + len(self.random_steps) + len(self.jump_steps) + 16)


def encode_value(value: Any) -> Any:
    """How a field value travels in a message, typed so durable_rules cannot coerce.

    durable_rules treats ``false == 0``, ``true == 1`` and ``"" == 0`` as equal; JSON and
    the reference evaluator do not. Text carries an ``s:`` prefix and booleans become
    ``b:true`` / ``b:false``, so only values of one type can ever be equal. Numbers travel
    as they are. (Printable prefixes: durable_rules mishandles escaped control characters.)
    """
    if isinstance(value, bool):
        return "b:true" if value else "b:false"
    if isinstance(value, str):
        return "s:" + value
    return value


def decode_value(value: Any) -> Any:
    """The inverse of ``encode_value``, for showing facts to people."""
    if value in ("b:true", "b:false"):
        return value == "b:true"
    if isinstance(value, str) and value.startswith("s:"):
        return value[2:]
    return value


class Lowerer:
    """Turns conditions into durable tests while recording the facts they need."""

    def __init__(self) -> None:
        self.needs = FactNeeds()

    def condition(self, cond: Condition) -> dict[str, Any]:
        if isinstance(cond, Group):
            return self._group(cond)
        return self._leaf(cond)

    def _group(self, group: Group) -> dict[str, Any]:
        if group.mode == "not":
            return self._negated(group.items[0])
        parts = [self.condition(c) for c in group.items]
        if not parts:
            return {"$ex": {"now": 1}}  # an empty AND is true; every message has "now"
        if len(parts) == 1:
            return parts[0]
        return {"$and" if group.mode == "all" else "$or": parts}

    def _negated(self, cond: Condition) -> dict[str, Any]:
        """NOT by De Morgan down to leaves, each leaf negated by its complement."""
        if isinstance(cond, Group):
            if cond.mode == "not":
                return self.condition(cond.items[0])
            flipped: Literal["all", "any"] = "any" if cond.mode == "all" else "all"
            return self._group(Group(flipped, tuple(Group("not", (c,)) for c in cond.items)))
        return self._leaf(cond, negate=True)

    def _leaf(self, leaf: Leaf, negate: bool = False) -> dict[str, Any]:
        op = leaf.op
        if op in SET_FIELD:
            return self._set_test(leaf, negate)
        if op in ACTIVITY_KIND:
            return self._activity_test(leaf, negate)
        if op in TEXT_OPS:
            return self._text_test(leaf, negate)
        if op in DATE_OPS:
            return self._date_test(leaf, negate)
        return self._value_test(leaf, negate)

    # --- leaf kinds ---------------------------------------------------------------
    def _path(self, field_name: str) -> str:
        if field_name.startswith("event."):
            return field_name
        self.needs.fields.add(field_name)
        return f"contact.f.{field_name}"

    def _set_test(self, leaf: Leaf, negate: bool) -> dict[str, Any]:
        kind = SET_FIELD[leaf.op]
        getattr(self.needs, kind).add(str(leaf.value))
        has = {"$iany": {f"contact.{kind}": {"$i": str(leaf.value)}}}
        positive = not leaf.op.startswith("not_")
        return has if positive != negate else {"$not_any": has}  # replaced in _finish

    def _activity_test(self, leaf: Leaf, negate: bool) -> dict[str, Any]:
        kind = ACTIVITY_KIND[leaf.op]
        self.needs.activity.add((kind, str(leaf.value)))
        path = f"contact.act.{kind}.{leaf.value}"
        if leaf.days is None:
            return {"$nex": {path: 1}} if negate else {"$ex": {path: 1}}
        since = {"$sub": {"$l": {"$m": "now"}, "$r": leaf.days * DAY}}
        if negate:
            return {"$or": [{"$nex": {path: 1}}, {"$lt": {path: since}}]}
        return {"$gte": {path: since}}

    def _text_test(self, leaf: Leaf, negate: bool) -> dict[str, Any]:
        test_id = f"t{len(self.needs.text_tests)}"
        path = leaf.field or ""
        if not path.startswith("event."):
            self.needs.fields.add(path)
        self.needs.text_tests[test_id] = [path, leaf.op, leaf.value]
        return {f"contact.x.{test_id}": not negate}

    def _date_test(self, leaf: Leaf, negate: bool) -> dict[str, Any]:
        field_name = leaf.field or ""
        if field_name.startswith("event."):
            path = field_name  # the runtime hands event dates over as epoch seconds
        else:
            self.needs.date_fields.add(field_name)
            path = f"contact.d.{field_name}"
        now = {"$m": "now"}
        test: dict[str, Any]
        if leaf.op in ("date_before", "date_after"):
            bound = _epoch_literal(leaf.value)
            test = {"$lt" if leaf.op == "date_before" else "$gt": {path: bound}}
        elif leaf.op == "within_last_days":
            test = {"$and": [{"$lte": {path: now}},
                             {"$gte": {path: {"$sub": {"$l": now, "$r": (leaf.days or 0) * DAY}}}}]}
        else:
            test = {"$and": [{"$gte": {path: now}},
                             {"$lte": {path: {"$add": {"$l": now, "$r": (leaf.days or 0) * DAY}}}}]}
        if negate:
            bounds = test.get("$and", [test])
            return {"$or": [{"$nex": {path: 1}}, *[_flip_bound(t) for t in bounds]]}
        return test

    def _value_test(self, leaf: Leaf, negate: bool) -> dict[str, Any]:
        path = self._path(leaf.field or "")
        op, value = leaf.op, leaf.value
        if op in ("is_true", "is_false"):
            op, value = "eq", op == "is_true"
        if op == "is_set":
            op = "is_blank"
            negate = not negate
        if op == "is_blank":
            empty = encode_value("")
            blank = {"$or": [{"$nex": {path: 1}}, {path: empty}]}
            return {"$and": [{"$ex": {path: 1}}, {"$neq": {path: empty}}]} if negate else blank
        if op == "in" or op == "not_in":
            negate = negate != (op == "not_in")
            return self._one_of(path, list(value or []), negate)
        if op in ("gt", "gte", "lt", "lte"):
            if not _is_number(value):
                return self._date_order(leaf, negate)
            return _compare(self._number_path(leaf.field or ""), op, value, negate)
        return _compare(path, op, value, negate)

    def _number_path(self, field_name: str) -> str:
        """Ordering tests read ``contact.n``, which holds only numeric values: durable_rules
        would otherwise order a text against a number."""
        if field_name.startswith("event."):
            return field_name
        self.needs.number_fields.add(field_name)
        return f"contact.n.{field_name}"

    def _date_order(self, leaf: Leaf, negate: bool) -> dict[str, Any]:
        """gt/lt against an ISO date compares instants, as the reference evaluator does."""
        field_name = leaf.field or ""
        path = field_name if field_name.startswith("event.") else f"contact.d.{field_name}"
        if not field_name.startswith("event."):
            self.needs.date_fields.add(field_name)
        return _compare(path, leaf.op, _epoch_literal(leaf.value), negate)

    def _one_of(self, path: str, values: list[Any], negate: bool) -> dict[str, Any]:
        values = [encode_value(v) for v in values]
        if negate:
            return {"$or": [{"$nex": {path: 1}},
                            {"$and": [{"$neq": {path: v}} for v in values] or [{"$ex": {path: 1}}]}]}
        if not values:
            return {"$nex": {"now": 1}}  # nothing is in an empty list
        return {"$or": [{path: v} for v in values]} if len(values) > 1 else {path: values[0]}


_COMPLEMENT = {"eq": "neq", "neq": "eq", "gt": "lte", "gte": "lt", "lt": "gte", "lte": "gt"}


def _compare(path: str, op: str, value: Any, negate: bool) -> dict[str, Any]:
    """A comparison; a missing field makes every positive comparison false except ``neq``."""
    value = encode_value(value)
    if negate:
        op = _COMPLEMENT[op]
        if op in ("gt", "gte", "lt", "lte"):
            return {"$or": [{"$nex": {path: 1}}, _positive(path, op, value)]}
    return _positive(path, op, value)


def _positive(path: str, op: str, value: Any) -> dict[str, Any]:
    if op == "eq":
        return {path: value}
    if op == "neq":
        return {"$or": [{"$nex": {path: 1}}, {"$neq": {path: value}}]}
    return {f"${op}": {path: value}}


def _epoch_literal(value: Any) -> float:
    epoch = to_epoch(value)
    if epoch is None:
        raise ValueError(f"not a date: {value!r}")
    return epoch


def finish(test: dict[str, Any]) -> dict[str, Any]:
    """Rewrite the two internal negation markers into forms durable_rules accepts.

    ``$not_any`` (list lacks item) becomes ``$iall`` over ``$neq``.
    """
    if not isinstance(test, dict):
        return test
    out: dict[str, Any] = {}
    for key, val in test.items():
        if key == "$not_any":
            (path, item), = val["$iany"].items()
            return {"$iall": {path: {"$neq": {"$i": item["$i"]}}}}
        if key in ("$and", "$or"):
            out[key] = [finish(t) for t in val]
        else:
            out[key] = val
    return out


_FLIP = {"$lt": "$gte", "$lte": "$gt", "$gt": "$lte", "$gte": "$lt"}


def _flip_bound(test: dict[str, Any]) -> dict[str, Any]:
    (op, body), = test.items()
    return {_FLIP[op]: body}

"""The JSON journey document (format_version 1) <-> the model: strict load, plain dump.

``load_journey`` checks shape and types only, and reports every problem at once under a
JSON path (``steps[2].branches.yes``) so a form can show each message next to its field;
cross-references, reachability and catalogue rules live in ``checks``. Nothing here
evaluates user text.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from crm_journeys.definition import model as m
from crm_journeys.definition.dates import is_number as _is_number
from crm_journeys.definition.durations import format_duration, parse_duration
from crm_journeys.errors import DefinitionError

ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,63}$")
FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
GROUP_MODES: tuple[Literal["all", "any", "not"], ...] = ("all", "any", "not")
ENTRY_POLICIES = ("once", "every_time", "after_exit", "cooldown", "max_times")
NO_VALUE_OPS = ("is_set", "is_blank", "is_true", "is_false", "within_last_days", "within_next_days")
ORDER_OPS = ("gt", "gte", "lt", "lte")
TEXT_OPS = ("contains", "not_contains", "starts_with")

_ID_MESSAGE = "an id uses letters, digits, _ and - (at most 64 characters)"
_FIELD_MESSAGE = "a field name uses letters, digits and _ (event.<property> for the event)"


# --- small strict fields ----------------------------------------------------------------


class StrictBool(fields.Field):
    """``true`` or ``false`` only: marshmallow's Boolean would take ``1`` and ``"yes"``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError("must be true or false")
        return value


class Duration(fields.Field):
    """An ISO 8601 duration; ``sign`` restricts it to ``positive`` or ``non_negative``."""

    def __init__(self, sign: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.sign = sign

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> timedelta:
        try:
            delta = parse_duration(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        if self.sign == "positive" and delta <= timedelta(0):
            raise ValidationError("must be longer than zero")
        if self.sign == "non_negative" and delta < timedelta(0):
            raise ValidationError("cannot be negative")
        return delta


class FullMatch(validate.Validator):
    """Like ``validate.Regexp`` but the whole text must match (no trailing newline)."""

    def __init__(self, regex: re.Pattern[str], error: str):
        self.regex, self.message = regex, error

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self.message)
        return value


def _id_field(**kwargs: Any) -> fields.String:
    return fields.String(validate=FullMatch(ID_RE, _ID_MESSAGE), **kwargs)


def _target(**kwargs: Any) -> fields.String:
    """A connection to a step id; ``null`` ends the journey there."""
    return _id_field(allow_none=True, **kwargs)


def _is_iso_date(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    for parse in (date.fromisoformat, datetime.fromisoformat):
        try:
            parse(value)
            return True
        except ValueError:
            continue
    return False



def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or _is_number(value)


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


# --- conditions -------------------------------------------------------------------------


class LeafSchema(StrictSchema):
    op = fields.String(
        required=True,
        validate=validate.OneOf(m.OPERATORS, error="unknown operator {input!r}; known: {choices}"),
    )
    field = fields.String(validate=FullMatch(FIELD_RE, _FIELD_MESSAGE))
    value = fields.Raw(allow_none=True)
    days = fields.Integer(strict=True, validate=validate.Range(min=0), allow_none=True)

    @validates_schema
    def _operands(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors = leaf_operand_errors(data)
        if errors:
            raise ValidationError(errors)

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> m.Leaf:
        value = data.get("value")
        if isinstance(value, list):
            value = tuple(value)
        return m.Leaf(op=data["op"], field=data.get("field"), value=value, days=data.get("days"))


def leaf_operand_errors(data: dict[str, Any]) -> dict[str, list[str]]:
    """Which of ``field``/``value``/``days`` the operator needs, forbids, or got wrong."""
    op = data["op"]
    errors: dict[str, list[str]] = {}
    if op in m.FIELD_OPS and not data.get("field"):
        errors["field"] = [f"operator {op} needs a field"]
    if op not in m.FIELD_OPS and "field" in data:
        errors["field"] = [f"not used by operator {op}"]
    message = _value_error(op, data)
    if message:
        errors["value"] = [message]
    days = data.get("days")
    if op in ("within_last_days", "within_next_days") and days is None:
        errors["days"] = [f"operator {op} needs days"]
    elif days is not None and op not in m.ACTIVITY_OPS + ("within_last_days", "within_next_days"):
        errors["days"] = [f"not used by operator {op}"]
    return errors


def _value_error(op: str, data: dict[str, Any]) -> str | None:
    """A message when ``value`` does not suit ``op``, else ``None``."""
    has, value = "value" in data, data.get("value")
    if op in NO_VALUE_OPS:
        return f"not used by operator {op}" if has else None
    if not has or value is None:
        return f"operator {op} needs a value"
    if op in ("in", "not_in"):
        ok = isinstance(value, list) and value and all(_is_scalar(v) for v in value)
        return None if ok else f"operator {op} needs a non-empty list of values"
    if op in ORDER_OPS:
        return (
            None
            if _is_number(value) or _is_iso_date(value)
            else f"operator {op} needs a number or an ISO date"
        )
    if op in ("date_before", "date_after"):
        return None if _is_iso_date(value) else f"operator {op} needs an ISO date (2026-12-31)"
    if op in m.SET_OPS + m.ACTIVITY_OPS:
        return None if isinstance(value, str) and value else f"operator {op} needs a name (text)"
    if op == "starts_with":
        return None if isinstance(value, str) else "operator starts_with needs text"
    return None if _is_scalar(value) else f"operator {op} needs a text, number or true/false value"


def parse_condition(doc: Any) -> m.Condition:
    """Build a condition tree, raising one ValidationError with nested paths."""
    if not isinstance(doc, dict):
        raise ValidationError(
            'a condition is an object: {"all": [..]}, {"any": [..]}, {"not": {..}} or {"op": ..}'
        )
    modes: list[Literal["all", "any", "not"]] = [k for k in GROUP_MODES if k in doc]
    if not modes:
        return LeafSchema().load(doc)
    mode = modes[0]
    extra = {k: [f"cannot be combined with {mode!r}"] for k in doc if k != mode}
    if extra:
        raise ValidationError(extra)
    if mode == "not":
        try:
            return m.Group("not", (parse_condition(doc["not"]),))
        except ValidationError as exc:
            raise ValidationError({"not": exc.messages}) from None
    return m.Group(mode, _parse_items(mode, doc[mode]))


def _parse_items(mode: Literal["all", "any", "not"], items: Any) -> tuple[m.Condition, ...]:
    if not isinstance(items, list) or not items:
        raise ValidationError({mode: ["needs a non-empty list of conditions"]})
    parsed, errors = [], {}
    for i, item in enumerate(items):
        try:
            parsed.append(parse_condition(item))
        except ValidationError as exc:
            errors[i] = exc.messages
    if errors:
        raise ValidationError({mode: errors})
    return tuple(parsed)


class ConditionField(fields.Field):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> m.Condition:
        return parse_condition(value)


class EventMatchSchema(StrictSchema):
    type = fields.String(required=True, validate=validate.Length(min=1))
    key = fields.String(allow_none=True, load_default=None)
    where = ConditionField(allow_none=True, load_default=None)

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> m.EventMatch:
        return m.EventMatch(**data)


# --- steps ------------------------------------------------------------------------------


class BranchesSchema(StrictSchema):
    """Both branches must be written out; ``null`` ends the journey on that branch."""

    yes = _target(required=True)
    no = _target(required=True)


class StepSchema(StrictSchema):
    model: type[m.Step] = m.Step
    id = _id_field(required=True)
    type = fields.String(required=True)
    label = fields.String(load_default="")

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> m.Step:
        data.pop("type")
        data.update(data.pop("branches", {}))
        return self.model(**self.convert(data))

    def convert(self, data: dict[str, Any]) -> dict[str, Any]:
        return data


class ActionStepSchema(StepSchema):
    model = m.ActionStep
    action = fields.String(required=True, validate=validate.Length(min=1))
    params = fields.Dict(keys=fields.String(), load_default=dict)
    next = _target(load_default=None)
    run_multiple_times = StrictBool(load_default=False)


class WaitStepSchema(StepSchema):
    model = m.WaitStep
    duration = Duration("positive", required=True)
    next = _target(load_default=None)


class WaitUntilStepSchema(StepSchema):
    model = m.WaitUntilStep
    date = fields.String(
        validate=lambda v: _require(_is_iso_date(v), "must be an ISO date (2026-12-31)")
    )
    field = fields.String(validate=FullMatch(FIELD_RE, _FIELD_MESSAGE))
    offset = Duration()
    time = fields.String(validate=FullMatch(TIME_RE, "must be a time of day as HH:MM"))
    weekdays = fields.List(fields.String(validate=validate.OneOf(WEEKDAYS)), load_default=list)
    next = _target(load_default=None)

    @validates_schema
    def _moment(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not any(data.get(k) for k in ("date", "field", "time", "weekdays")):
            raise ValidationError("wait_until needs a date, a field, a time or weekdays")
        if data.get("date") and data.get("field"):
            raise ValidationError({"field": ["use either date or field, not both"]})
        if "offset" in data and not (data.get("date") or data.get("field")):
            raise ValidationError({"offset": ["an offset needs a date or a field"]})
        if len(set(data.get("weekdays", []))) != len(data.get("weekdays", [])):
            raise ValidationError({"weekdays": ["a weekday is listed twice"]})

    def convert(self, data: dict[str, Any]) -> dict[str, Any]:
        data["weekdays"] = tuple(data["weekdays"])
        return data


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValidationError(message)


class WaitAndCheckStepSchema(StepSchema):
    model = m.WaitAndCheckStep
    duration = Duration("positive", required=True)
    condition = ConditionField(required=True)
    branches = fields.Nested(BranchesSchema, required=True)


class ReactToEventStepSchema(StepSchema):
    model = m.ReactToEventStep
    event = fields.Nested(EventMatchSchema, required=True)
    timeout = Duration("positive", required=True)
    branches = fields.Nested(BranchesSchema, required=True)


class IfThenStepSchema(StepSchema):
    """``timeout`` left out (or PT0S) holds until the condition is true, with no NO exit."""

    model = m.IfThenStep
    condition = ConditionField(required=True)
    timeout = Duration("non_negative", load_default=timedelta(0))
    branches = fields.Nested(BranchesSchema, required=True)


class ConditionSplitStepSchema(StepSchema):
    model = m.ConditionSplitStep
    condition = ConditionField(required=True)
    branches = fields.Nested(BranchesSchema, required=True)


def _unique_names(items: list[Any], key: str) -> None:
    """Names are the connection names of a split: two alike would be ambiguous."""
    seen: set[str] = set()
    errors: dict[int, dict[str, list[str]]] = {}
    for i, item in enumerate(items):
        if item.name in seen:
            errors[i] = {"name": [f"duplicate name {item.name!r}"]}
        seen.add(item.name)
    if errors:
        raise ValidationError({key: errors})


class CaseSchema(StrictSchema):
    name = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=64),
            validate.NoneOf(["default"], error="'default' is reserved for the default connection"),
        ],
    )
    condition = ConditionField(required=True)
    next = _target(required=True)

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> m.Case:
        return m.Case(**data)


class MultiSplitStepSchema(StepSchema):
    model = m.MultiSplitStep
    cases = fields.List(
        fields.Nested(CaseSchema),
        required=True,
        validate=validate.Length(min=1, error="needs at least one case"),
    )
    default = _target(load_default=None)

    @validates_schema
    def _names(self, data: dict[str, Any], **kwargs: Any) -> None:
        _unique_names(data["cases"], "cases")

    def convert(self, data: dict[str, Any]) -> dict[str, Any]:
        data["cases"] = tuple(data["cases"])
        return data


class PathSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    percent = fields.Integer(strict=True, required=True, validate=validate.Range(min=0, max=100))
    next = _target(required=True)

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> m.Path:
        return m.Path(**data)


class RandomSplitStepSchema(StepSchema):
    model = m.RandomSplitStep
    paths = fields.List(
        fields.Nested(PathSchema),
        required=True,
        validate=validate.Length(min=2, error="a random split needs at least two paths"),
    )

    @validates_schema
    def _names(self, data: dict[str, Any], **kwargs: Any) -> None:
        _unique_names(data["paths"], "paths")

    def convert(self, data: dict[str, Any]) -> dict[str, Any]:
        data["paths"] = tuple(data["paths"])
        return data


class JumpStepSchema(StepSchema):
    model = m.JumpStep
    to = _id_field(required=True)
    max_times = fields.Integer(
        strict=True, load_default=1, validate=validate.Range(min=1, max=1000)
    )
    next = _target(load_default=None)


class ExitStepSchema(StepSchema):
    model = m.ExitStep


STEP_SCHEMAS: dict[str, type[StepSchema]] = {
    "action": ActionStepSchema,
    "wait": WaitStepSchema,
    "wait_until": WaitUntilStepSchema,
    "wait_and_check": WaitAndCheckStepSchema,
    "react_to_event": ReactToEventStepSchema,
    "if_then": IfThenStepSchema,
    "condition_split": ConditionSplitStepSchema,
    "multi_split": MultiSplitStepSchema,
    "random_split": RandomSplitStepSchema,
    "jump": JumpStepSchema,
    "exit": ExitStepSchema,
}


class StepField(fields.Field):
    """Picks the step schema by ``type``, so each step reports its own unknown keys."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> m.Step:
        if not isinstance(value, dict):
            raise ValidationError("a step is an object with an id and a type")
        if "type" not in value:
            raise ValidationError({"type": ["Missing data for required field."]})
        schema = STEP_SCHEMAS.get(value["type"]) if isinstance(value["type"], str) else None
        if schema is None:
            known = ", ".join(STEP_SCHEMAS)
            raise ValidationError(
                {"type": [f"unknown step type {value['type']!r}; known: {known}"]}
            )
        return schema().load(value)


# --- journey ----------------------------------------------------------------------------


def _needs_condition_or_event(data: dict[str, Any], what: str) -> None:
    if data.get("condition") is None and data.get("event") is None:
        raise ValidationError(f"{what} needs a condition, an event, or both")


class GoalSchema(StrictSchema):
    id = _id_field(required=True)
    label = fields.String(load_default="")
    condition = ConditionField(allow_none=True, load_default=None)
    event = fields.Nested(EventMatchSchema, allow_none=True, load_default=None)
    then = _target(load_default=None)

    @validates_schema
    def _reachable(self, data: dict[str, Any], **kwargs: Any) -> None:
        _needs_condition_or_event(data, "a goal")

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> m.Goal:
        return m.Goal(**data)


class ExitRuleSchema(StrictSchema):
    id = _id_field(required=True)
    condition = ConditionField(allow_none=True, load_default=None)
    event = fields.Nested(EventMatchSchema, allow_none=True, load_default=None)

    @validates_schema
    def _reachable(self, data: dict[str, Any], **kwargs: Any) -> None:
        _needs_condition_or_event(data, "an exit rule")

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> m.ExitRule:
        return m.ExitRule(**data)


class EntrySchema(StrictSchema):
    policy = fields.String(load_default="once", validate=validate.OneOf(ENTRY_POLICIES))
    cooldown = Duration("positive")
    max_entries = fields.Integer(strict=True, validate=validate.Range(min=1))

    @validates_schema
    def _policy_options(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors = {}
        for key, policy in (("cooldown", "cooldown"), ("max_entries", "max_times")):
            if data.get("policy") == policy and key not in data:
                errors[key] = [f"policy {policy} needs {key}"]
            elif data.get("policy") != policy and key in data:
                errors[key] = [f"only used with policy {policy}"]
        if errors:
            raise ValidationError(errors)

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> m.EntryPolicy:
        return m.EntryPolicy(
            mode=data["policy"], cooldown=data.get("cooldown"), max_entries=data.get("max_entries")
        )


def _time_zone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise ValidationError(
            f"unknown time zone {name!r} (use an IANA name such as Europe/Rome)"
        ) from None


class SettingsSchema(StrictSchema):
    interaction_triggers_start = StrictBool(load_default=False)
    time_zone = fields.String(load_default="UTC", validate=_time_zone)
    priority = fields.Integer(strict=True, load_default=50, validate=validate.Range(0, 100))
    email_tracking = StrictBool(load_default=True)

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> m.Settings:
        return m.Settings(**data)


class StartingPointSchema(StrictSchema):
    id = _id_field(required=True)
    type = fields.String(required=True, validate=validate.Length(min=1))
    params = fields.Dict(keys=fields.String(), load_default=dict)
    filter = ConditionField(allow_none=True, load_default=None)
    next = _target(load_default=None)

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> m.StartingPoint:
        return m.StartingPoint(**data)


class JourneySchema(StrictSchema):
    format_version = fields.Integer(
        strict=True,
        required=True,
        validate=validate.Equal(
            m.FORMAT_VERSION,
            error=f"unsupported format_version {{input}}; this version reads {m.FORMAT_VERSION}",
        ),
    )
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(load_default="")
    settings = fields.Nested(SettingsSchema, load_default=m.Settings)
    entry = fields.Nested(EntrySchema, load_default=m.EntryPolicy)
    starting_points = fields.List(fields.Nested(StartingPointSchema), required=True)
    entry_filter = ConditionField(allow_none=True, load_default=None)
    first_step = _target(required=True)
    steps = fields.List(StepField(), required=True)
    goals = fields.List(fields.Nested(GoalSchema), load_default=list)
    exit_rules = fields.List(fields.Nested(ExitRuleSchema), load_default=list)

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> m.Journey:
        for key in ("starting_points", "steps", "goals", "exit_rules"):
            data[key] = tuple(data[key])
        return m.Journey(**data)


# --- errors as JSON paths ---------------------------------------------------------------


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn marshmallow's nested messages into ``{"steps[2].branches.yes": [...]}``.

    ``_schema`` messages belong to the object itself; the document root is ``""``.
    """
    if isinstance(messages, str):
        return {prefix: [messages]}
    if isinstance(messages, list):
        out: dict[str, list[str]] = {}
        for item in messages:
            _merge(out, flatten_errors(item, prefix))
        return out
    out = {}
    for key, sub in messages.items():
        _merge(out, flatten_errors(sub, _join(prefix, key)))
    return out


def _join(prefix: str, key: Any) -> str:
    if key == "_schema":
        return prefix
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else str(key)


def _merge(into: dict[str, list[str]], new: dict[str, list[str]]) -> None:
    for path, msgs in new.items():
        into.setdefault(path, []).extend(msgs)


# --- public API -------------------------------------------------------------------------


def load_journey(doc: Any) -> m.Journey:
    """Read a journey document into the model, checking shape and types only.

    Raises:
        DefinitionError: every problem found, keyed by JSON path.
    """
    if not isinstance(doc, dict):
        raise DefinitionError({"": ["a journey document must be a JSON object"]})
    try:
        return JourneySchema().load(doc)
    except ValidationError as exc:
        raise DefinitionError(flatten_errors(exc.messages)) from None


def dump_condition(cond: m.Condition) -> dict[str, Any]:
    if isinstance(cond, m.Group):
        if cond.mode == "not":
            return {"not": dump_condition(cond.items[0])}
        return {cond.mode: [dump_condition(c) for c in cond.items]}
    out: dict[str, Any] = {"op": cond.op}
    if cond.field is not None:
        out["field"] = cond.field
    if cond.value is not None:
        out["value"] = list(cond.value) if isinstance(cond.value, tuple) else cond.value
    if cond.days is not None:
        out["days"] = cond.days
    return out


def _dump_optional_condition(cond: m.Condition | None) -> dict[str, Any] | None:
    return None if cond is None else dump_condition(cond)


def dump_event_match(event: m.EventMatch) -> dict[str, Any]:
    out: dict[str, Any] = {"type": event.type}
    if event.key is not None:
        out["key"] = event.key
    if event.where is not None:
        out["where"] = dump_condition(event.where)
    return out


_STEP_NAMES = {cls: name for name, cls in m.STEP_TYPES.items()}


def dump_step(step: m.Step) -> dict[str, Any]:
    """One step as JSON; each type writes exactly the keys its schema reads."""
    out: dict[str, Any] = {"id": step.id, "type": _STEP_NAMES[type(step)], "label": step.label}
    out.update(_STEP_DUMPERS[type(step)](step))
    return out


def _branches(step: Any) -> dict[str, Any]:
    return {"branches": {"yes": step.yes, "no": step.no}}


def _dump_wait_until(s: m.WaitUntilStep) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: getattr(s, k) for k in ("date", "field", "time") if getattr(s, k) is not None
    }
    if s.offset:
        out["offset"] = format_duration(s.offset)
    if s.weekdays:
        out["weekdays"] = list(s.weekdays)
    out["next"] = s.next
    return out


def _dump_if_then(s: m.IfThenStep) -> dict[str, Any]:
    out: dict[str, Any] = {"condition": dump_condition(s.condition)}
    if s.timeout:
        out["timeout"] = format_duration(s.timeout)
    return out | _branches(s)


_STEP_DUMPERS: dict[type[m.Step], Any] = {
    m.ActionStep: lambda s: {
        "action": s.action,
        "params": dict(s.params),
        "next": s.next,
        "run_multiple_times": s.run_multiple_times,
    },
    m.WaitStep: lambda s: {"duration": format_duration(s.duration), "next": s.next},
    m.WaitUntilStep: _dump_wait_until,
    m.WaitAndCheckStep: lambda s: (
        {"duration": format_duration(s.duration), "condition": dump_condition(s.condition)}
        | _branches(s)
    ),
    m.ReactToEventStep: lambda s: (
        {"event": dump_event_match(s.event), "timeout": format_duration(s.timeout)} | _branches(s)
    ),
    m.IfThenStep: _dump_if_then,
    m.ConditionSplitStep: lambda s: {"condition": dump_condition(s.condition)} | _branches(s),
    m.MultiSplitStep: lambda s: {
        "cases": [
            {"name": c.name, "condition": dump_condition(c.condition), "next": c.next}
            for c in s.cases
        ],
        "default": s.default,
    },
    m.RandomSplitStep: lambda s: {
        "paths": [{"name": p.name, "percent": p.percent, "next": p.next} for p in s.paths]
    },
    m.JumpStep: lambda s: {"to": s.to, "max_times": s.max_times, "next": s.next},
    m.ExitStep: lambda s: {},
}


def _dump_entry(entry: m.EntryPolicy) -> dict[str, Any]:
    out: dict[str, Any] = {"policy": entry.mode}
    if entry.cooldown is not None:
        out["cooldown"] = format_duration(entry.cooldown)
    if entry.max_entries is not None:
        out["max_entries"] = entry.max_entries
    return out


def _dump_starting_point(sp: m.StartingPoint) -> dict[str, Any]:
    return {
        "id": sp.id,
        "type": sp.type,
        "params": dict(sp.params),
        "filter": _dump_optional_condition(sp.filter),
        "next": sp.next,
    }


def _dump_goal(g: m.Goal) -> dict[str, Any]:
    return {
        "id": g.id,
        "label": g.label,
        "condition": _dump_optional_condition(g.condition),
        "event": None if g.event is None else dump_event_match(g.event),
        "then": g.then,
    }


def _dump_exit_rule(x: m.ExitRule) -> dict[str, Any]:
    return {
        "id": x.id,
        "condition": _dump_optional_condition(x.condition),
        "event": None if x.event is None else dump_event_match(x.event),
    }


def dump_journey(j: m.Journey) -> dict[str, Any]:
    """The JSON document for a journey; ``load_journey(dump_journey(j)) == j``."""
    return {
        "format_version": j.format_version,
        "name": j.name,
        "description": j.description,
        "settings": {
            "interaction_triggers_start": j.settings.interaction_triggers_start,
            "time_zone": j.settings.time_zone,
            "priority": j.settings.priority,
            "email_tracking": j.settings.email_tracking,
        },
        "entry": _dump_entry(j.entry),
        "starting_points": [_dump_starting_point(sp) for sp in j.starting_points],
        "entry_filter": _dump_optional_condition(j.entry_filter),
        "first_step": j.first_step,
        "steps": [dump_step(s) for s in j.steps],
        "goals": [_dump_goal(g) for g in j.goals],
        "exit_rules": [_dump_exit_rule(x) for x in j.exit_rules],
    }

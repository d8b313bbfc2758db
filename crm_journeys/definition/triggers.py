"""The catalogue of starting-point types: what each listens to, its parameters, its rules.

A starting point is data (``StartingPoint(type, params)``); its type here says which
canonical event it listens to, which parameter routes it (so an event only reaches
journeys that can use it), and which extra tests on the event's properties it adds.
The UI renders its forms from ``Param`` (``catalog_as_json``), the compiler reads
``event_conditions``, ``checks`` validates parameters with ``TriggerType.param_errors``,
and connectors and the runtime emit exactly the events of ``CANONICAL_EVENTS``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from crm_journeys.definition.dates import is_number as _is_number
from crm_journeys.definition.durations import parse_duration
from crm_journeys.definition.model import Condition, Group, Leaf

ParamType = Literal[
    "text", "number", "integer", "duration", "date", "time", "bool", "list", "choice", "value"
]
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@dataclass(frozen=True)
class Param:
    """One parameter of a starting point, step or action, as a form field.

    ``picker`` names a list the connected CRM fills (tags, groups, fields, emails,
    products, forms, segments, journeys, owners); ``choices`` a fixed list. ``value`` is
    any text, number or true/false (a field's value); ``list`` a list of texts.
    """

    name: str
    type: ParamType = "text"
    label: str = ""
    required: bool = True
    picker: str | None = None
    choices: tuple[str, ...] = ()
    default: Any = None
    help: str = ""
    minimum: int | None = None
    maximum: int | None = None

    def error(self, value: Any) -> str | None:
        """Why ``value`` does not fit this parameter, or ``None`` when it does."""
        message = _TYPE_CHECKS[self.type](self, value)
        if message is None and self.type in ("integer", "number"):
            if self.minimum is not None and value < self.minimum:
                return f"must be at least {self.minimum}"
            if self.maximum is not None and value > self.maximum:
                return f"must be at most {self.maximum}"
        return message

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "label": self.label or self.name,
            "required": self.required,
        }
        for key in ("picker", "default", "help", "minimum", "maximum"):
            if getattr(self, key) not in (None, ""):
                out[key] = getattr(self, key)
        if self.choices:
            out["choices"] = list(self.choices)
        return out



def _duration_error(value: Any) -> str | None:
    try:
        parse_duration(value)
    except ValueError as exc:
        return str(exc)
    return None


def _date_error(value: Any) -> str | None:
    try:
        date.fromisoformat(value)
    except (TypeError, ValueError):
        return "must be an ISO date (2026-12-31)"
    return None


_TYPE_CHECKS: dict[str, Callable[[Param, Any], str | None]] = {
    "text": lambda p, v: None if isinstance(v, str) and v.strip() else "must be a non-empty text",
    "number": lambda p, v: None if _is_number(v) else "must be a number",
    "integer": lambda p, v: (
        None if isinstance(v, int) and not isinstance(v, bool) else "must be a whole number"
    ),
    "duration": lambda p, v: _duration_error(v),
    "date": lambda p, v: _date_error(v),
    "time": lambda p, v: (
        None if isinstance(v, str) and _TIME_RE.fullmatch(v) else "must be a time of day as HH:MM"
    ),
    "bool": lambda p, v: None if isinstance(v, bool) else "must be true or false",
    "list": lambda p, v: (
        None
        if isinstance(v, list) and v and all(isinstance(i, str) and i for i in v)
        else "must be a non-empty list of texts"
    ),
    "choice": lambda p, v: None if v in p.choices else f"must be one of: {', '.join(p.choices)}",
    "value": lambda p, v: (
        None
        if isinstance(v, str | bool) or _is_number(v)
        else "must be a text, a number or true/false"
    ),
}


@dataclass(frozen=True)
class Lapse:
    """A starting point fired by the absence of something, computed by the runtime.

    When ``params[delay_param]`` has passed after a ``source`` event and no ``cancel``
    event with the same ``correlate`` property arrived for the contact meanwhile, the
    runtime emits the trigger's own event (routed to the journey itself). Example: email
    not opened = ``email_sent``, then no ``email_opened`` for that ``email_id`` in 3 days.
    """

    source: str
    cancel: str
    delay_param: str
    correlate: str | None = None


@dataclass(frozen=True)
class TriggerType:
    """One starting-point type.

    Attributes:
        event: the canonical event type it listens to (a key of ``CANONICAL_EVENTS``).
        key_param: the parameter whose value must equal the event's routing key
            (``tag`` for ``tag_added``); ``None`` listens to every key.
        keyed_by_journey: the event names the journey it is for (journey API, manual
            add, dates, lapses): its routing key is the journey's id, not a parameter.
        exclusive: may not share a journey with any other starting point
            (abandoned cart, order notifications).
        schedule: ``"once"``/``"yearly"`` for date-based types, fired by the date index.
        entry_key: event property that keys the instance (one instance per cart/order).
        interaction: an interaction trigger; starts a journey only when the journey's
            settings allow it.
        lapse: set when the runtime derives the event from another one's absence.
        conditions: builds extra tests on ``event.*`` properties from the params.
        check: cross-parameter rules (``param -> message``) that ``Param`` cannot express.
    """

    name: str
    label: str
    group: str
    event: str
    params: tuple[Param, ...] = ()
    key_param: str | None = None
    exclusive: bool = False
    schedule: Literal["once", "yearly"] | None = None
    entry_key: str | None = None
    interaction: bool = False
    description: str = ""
    keyed_by_journey: bool = False
    lapse: Lapse | None = None
    conditions: Callable[[dict[str, Any]], list[Condition]] = field(
        default=lambda params: [], compare=False, repr=False
    )
    check: Callable[[dict[str, Any]], dict[str, str]] = field(
        default=lambda params: {}, compare=False, repr=False
    )

    def routing_key(self, params: dict[str, Any], journey_id: str | None = None) -> str:
        """The key an event must carry to reach this starting point (``*`` for any).

        Types ``keyed_by_journey`` route by the journey's own id when it is given.
        """
        if self.keyed_by_journey:
            return str(journey_id) if journey_id not in (None, "") else "*"
        if self.key_param is None:
            return "*"
        value = params.get(self.key_param)
        return "*" if value in (None, "") else str(value)

    def event_conditions(self, params: dict[str, Any]) -> list[Condition]:
        return list(self.conditions(params))

    def param_errors(self, params: dict[str, Any]) -> dict[str, list[str]]:
        """Problems with ``params``, keyed by parameter name (unknown, missing, bad type)."""
        known = {p.name: p for p in self.params}
        errors = {name: ["unknown parameter"] for name in params if name not in known}
        for p in self.params:
            value = params.get(p.name)
            if value is None:
                if p.required:
                    errors[p.name] = ["required"]
            elif (message := p.error(value)) is not None:
                errors[p.name] = [message]
        if not errors:
            errors = {k: [v] for k, v in self.check(params).items()}
        return errors

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "event": self.event,
            "params": [p.to_json() for p in self.params],
            "exclusive": self.exclusive,
            "schedule": self.schedule,
            "entry_key": self.entry_key,
            "interaction": self.interaction,
            "keyed_by_journey": self.keyed_by_journey,
        }


# --- condition builders -----------------------------------------------------------------

Builder = Callable[[dict[str, Any]], list[Condition]]


def _contains(prop: str, param: str, *, negate: bool = False) -> Builder:
    """``event.<prop>`` (a list) holds ``params[param]``, or any item of it when a list."""

    def build(params: dict[str, Any]) -> list[Condition]:
        wanted = params.get(param)
        if wanted in (None, "", []):
            return []
        values = wanted if isinstance(wanted, list) else [wanted]
        tests = [Leaf("contains", f"event.{prop}", v) for v in values]
        test = tests[0] if len(tests) == 1 else Group("any", tuple(tests))
        return [Group("not", (test,)) if negate else test]

    return build


def _equals(prop: str, param: str) -> Builder:
    """``event.<prop>`` equals ``params[param]`` when that parameter is given."""

    def build(params: dict[str, Any]) -> list[Condition]:
        value = params.get(param)
        return [] if value in (None, "") else [Leaf("eq", f"event.{prop}", value)]

    return build


def _fixed(*conditions: Condition) -> Builder:
    return lambda params: list(conditions)


def _each(*builders: Builder) -> Builder:
    """All the tests of several builders, in order."""
    return lambda params: [c for b in builders for c in b(params)]


def _changed_to(params: dict[str, Any]) -> list[Condition]:
    """Changed *to* the value: after == value and before != value (a missing before counts)."""
    value = params.get("value")
    return [Leaf("eq", "event.after", value), Leaf("neq", "event.before", value)]


def _record_field(params: dict[str, Any]) -> list[Condition]:
    """Optional field filter: the record's ``field`` equals ``value`` (or merely is set)."""
    name, value = params.get("field"), params.get("value")
    if not name:
        return []
    if value is None:
        return [Leaf("is_set", f"event.record.{name}")]
    return [Leaf("eq", f"event.record.{name}", value)]


def _updated_field(params: dict[str, Any]) -> list[Condition]:
    """For updates the field must be among the changed ones, then optionally equal value."""
    name = params.get("field")
    if not name:
        return []
    changed: list[Condition] = [Leaf("contains", "event.changed_fields", name)]
    return changed + (_record_field(params) if params.get("value") is not None else [])


def _segment_members(params: dict[str, Any]) -> list[Condition]:
    """Members present at publish carry ``existing: true``; either kind may be left out."""
    existing = Leaf("is_true", "event.existing")
    if not params.get("existing_members", True):
        return [Group("not", (existing,))]
    if not params.get("new_members", True):
        return [existing]
    return []


def _segment_check(params: dict[str, Any]) -> dict[str, str]:
    if params.get("existing_members", True) or params.get("new_members", True):
        return {}
    return {"new_members": "current members, new members, or both must enter"}


def _value_needs_field(params: dict[str, Any]) -> dict[str, str]:
    if params.get("value") is not None and not params.get("field"):
        return {"field": "a value needs the field it is compared with"}
    return {}


def _one_of(*names: str) -> Callable[[dict[str, Any]], dict[str, str]]:
    """Cross-parameter rule: at least one of ``names`` must be given."""

    def check(params: dict[str, Any]) -> dict[str, str]:
        if any(params.get(n) not in (None, "", []) for n in names):
            return {}
        return {names[0]: f"give {' or '.join(names)}"}

    return check


def _only_one_of(*names: str) -> Callable[[dict[str, Any]], dict[str, str]]:
    """Exactly one of ``names``."""

    def check(params: dict[str, Any]) -> dict[str, str]:
        given = [n for n in names if params.get(n) not in (None, "", [])]
        if len(given) == 1:
            return {}
        return {names[-1] if given else names[0]: f"give exactly one of {', '.join(names)}"}

    return check


# --- parameters used by several types ---------------------------------------------------


def _key(name: str, label: str, picker: str | None = None, **kw: Any) -> Param:
    return Param(name, label=label, picker=picker, **kw)


_EMAIL = _key("email", "Email", "emails")
_OFFSET = Param(
    "offset_days",
    "integer",
    label="Days before (-) or after (+)",
    required=False,
    default=0,
    minimum=-366,
    maximum=366,
)
_TIME = Param(
    "time", "time", label="Send time (contact's time zone)", required=False, default="09:00"
)
_WITHIN = Param("within", "duration", label="Within", help="ISO 8601 duration, e.g. P3D")


def _list_or_field(params: dict[str, Any]) -> dict[str, str]:
    """A signup anniversary reads one list's signup date or a date field, not both."""
    if params.get("list") and params.get("field") not in (None, "", "signup_date"):
        return {"list": "give a list or a date field, not both"}
    return {}


def _date_field(default: str | None) -> Param:
    return Param(
        "field", label="Date field", required=default is None, picker="fields", default=default
    )


def _order(name: str, label: str, event: str) -> TriggerType:
    return TriggerType(
        name,
        label,
        "ecommerce",
        event,
        exclusive=True,
        entry_key="order_id",
        description=f"Transactional: {label.lower()}. One instance per order; "
        "cannot share the journey with other starting points.",
    )


def _record(change: str) -> TriggerType:
    conditions = _updated_field if change == "updated" else _record_field
    return TriggerType(
        f"record_{change}",
        f"Record {change}",
        "audience",
        "record_changed",
        (
            _key("table", "Table", "tables", help="contact, lead, order or a custom table"),
            Param("field", label="Only when this field", required=False, picker="fields"),
            Param("value", "value", label="... has this value", required=False),
        ),
        key_param="table",
        check=_value_needs_field,
        conditions=_each(_fixed(Leaf("eq", "event.change", change)), conditions),
        description=f"A record of the chosen table is {change}; the contact linked to it enters.",
    )


_T = TriggerType
_AUDIENCE = [
    _T(
        "signup",
        "Subscribed / added to audience",
        "audience",
        "subscribed",
        (Param("list", label="List or audience", required=False, picker="groups"),),
        key_param="list",
        description="The contact subscribes or is added to the audience (any list when empty).",
    ),
    _T(
        "tag_added",
        "Tag added",
        "audience",
        "tag_added",
        (_key("tag", "Tag", "tags"),),
        key_param="tag",
        description="A specific tag is added to the contact.",
    ),
    _T(
        "tag_removed",
        "Tag removed",
        "audience",
        "tag_removed",
        (_key("tag", "Tag", "tags"),),
        key_param="tag",
        description="A specific tag is removed from the contact.",
    ),
    _T(
        "joined_group",
        "Joined group",
        "audience",
        "group_joined",
        (_key("group", "Group", "groups"),),
        key_param="group",
        description="The contact is added to a specific group, list or segment.",
    ),
    _T(
        "left_group",
        "Left group",
        "audience",
        "group_left",
        (_key("group", "Group", "groups"),),
        key_param="group",
        description="The contact leaves a specific group.",
    ),
    _T(
        "field_changed",
        "Field changed to value",
        "audience",
        "field_changed",
        (_key("field", "Field", "fields"), Param("value", "value", label="New value")),
        key_param="field",
        conditions=_changed_to,
        description="A contact field changes to the value (it was something else before).",
    ),
    _T(
        "page_visited",
        "Page visited",
        "audience",
        "page_visited",
        (_key("url", "Page URL"),),
        key_param="url",
        description="The contact visits a specific page of the tracked site.",
    ),
    _T(
        "site_link_clicked",
        "Link clicked on the site",
        "audience",
        "site_link_clicked",
        (_key("url", "Link URL"),),
        key_param="url",
        description="The contact clicks a specific link on the tracked site.",
    ),
    _T(
        "manual_add",
        "Added by hand",
        "audience",
        "manual_add",
        keyed_by_journey=True,
        description="A user adds one contact, a list, or the result of a saved search.",
    ),
    _record("created"),
    _record("updated"),
    _record("deleted"),
    _T(
        "form_submitted",
        "Form submitted",
        "audience",
        "form_submitted",
        (_key("form", "Form", "forms"),),
        key_param="form",
        description="A new or existing contact submits the form.",
    ),
    _T(
        "joined_segment",
        "Segment",
        "audience",
        "segment_joined",
        (
            _key("segment", "Segment", "segments"),
            Param(
                "existing_members",
                "bool",
                label="Current members enter at publish",
                required=False,
                default=True,
            ),
            Param(
                "new_members",
                "bool",
                label="New members enter as they join",
                required=False,
                default=True,
            ),
        ),
        key_param="segment",
        conditions=_segment_members,
        check=_segment_check,
        description="Segment-based journey: members enter now and, optionally, as they join.",
    ),
]

_DATES = [
    _T(
        "specific_date",
        "Specific date",
        "dates",
        "date_due",
        (
            Param("date", "date", label="Date", required=False),
            Param("field", label="Or a contact date field", required=False, picker="fields"),
            _OFFSET,
            _TIME,
        ),
        schedule="once",
        keyed_by_journey=True,
        check=_only_one_of("date", "field"),
        description="Once, on a fixed date or on the date in a contact field, in that year.",
    ),
    _T(
        "signup_anniversary",
        "Signup anniversary",
        "dates",
        "date_due",
        (
            _date_field("signup_date"),
            Param("list", label="Of this list", required=False, picker="groups",
                  help="the first subscription to this list (field signup_date.<list>)"),
            _OFFSET,
            _TIME,
        ),
        schedule="yearly",
        keyed_by_journey=True,
        check=_list_or_field,
        description="Every year on the anniversary of the date the contact joined: the "
        "signup_date field (stamped at the first subscription, or mapped from the CRM), or "
        "the first subscription to the given list.",
    ),
    _T(
        "birthday",
        "Birthday",
        "dates",
        "date_due",
        (
            Param(
                "field", label="Birthday field", required=False, picker="fields", default="birthday"
            ),
            _OFFSET,
            _TIME,
        ),
        schedule="yearly",
        keyed_by_journey=True,
        description="Every year on the contact's birthday (29 February falls on 28 February).",
    ),
    _T(
        "recurring_date",
        "Recurring date",
        "dates",
        "date_due",
        (_date_field(None), _OFFSET, _TIME),
        schedule="yearly",
        keyed_by_journey=True,
        description="Every year on the date held in a contact date field.",
    ),
]

_CART_PARAMS = (
    Param("after", "duration", label="Without checkout for", required=False, default="PT1H"),
)
_ECOMMERCE = [
    _T(
        "purchased_any",
        "Purchased any product",
        "ecommerce",
        "purchase",
        conditions=_fixed(Leaf("neq", "email_subscription", "unsubscribed")),  # never asked counts
        description="A subscribed contact buys any product (not one who unsubscribed from email).",
    ),
    _T(
        "purchased_product",
        "Purchased a specific product or category",
        "ecommerce",
        "purchase",
        (
            Param("product", label="Product", required=False, picker="products"),
            Param("category", label="Category", required=False, picker="categories"),
        ),
        conditions=_each(_contains("products", "product"), _contains("categories", "category")),
        check=_one_of("product", "category"),
        description="The contact buys the product, or any product of the category.",
    ),
    _T(
        "time_since_last_purchase",
        "Time since last purchase",
        "ecommerce",
        "purchase_lapsed",
        (Param("duration", "duration", label="Time since the last purchase"),),
        keyed_by_journey=True,
        lapse=Lapse("purchase", "purchase", "duration"),
        description="Only purchases after the journey went live count.",
    ),
    _T(
        "abandoned_cart",
        "Abandoned cart",
        "ecommerce",
        "cart_abandoned",
        _CART_PARAMS,
        exclusive=True,
        entry_key="cart_id",
        keyed_by_journey=True,
        lapse=Lapse("cart_updated", "order_confirmed", "after", "cart_id"),
        description="A cart saw no checkout for the set time. One instance per cart.",
    ),
    _T(
        "abandoned_cart_products",
        "Abandoned cart with specific products",
        "ecommerce",
        "cart_abandoned",
        _CART_PARAMS
        + (
            Param(
                "include_products",
                "list",
                label="Cart includes any of",
                required=False,
                picker="products",
            ),
            Param(
                "exclude_products",
                "list",
                label="Cart includes none of",
                required=False,
                picker="products",
            ),
        ),
        exclusive=True,
        entry_key="cart_id",
        keyed_by_journey=True,
        lapse=Lapse("cart_updated", "order_confirmed", "after", "cart_id"),
        conditions=_each(
            _contains("products", "include_products"),
            _contains("products", "exclude_products", negate=True),
        ),
        check=_one_of("include_products", "exclude_products"),
        description="As abandoned cart, when the cart includes any of / none of the products.",
    ),
    _order("order_confirmation", "Order confirmation", "order_confirmed"),
    _order("order_cancellation", "Cancellation confirmation", "order_cancelled"),
    _order("order_invoice", "Order invoice", "order_invoiced"),
    _order("shipping_confirmation", "Shipping confirmation", "order_shipped"),
    _order("refund_confirmation", "Refund confirmation", "order_refunded"),
]

_EMAIL_GROUP = [
    _T(
        "email_sent",
        "Email sent",
        "email",
        "email_sent",
        (_EMAIL,),
        key_param="email",
        description="The contact receives the email.",
    ),
    _T(
        "email_opened",
        "Email opened",
        "email",
        "email_opened",
        (_EMAIL,),
        key_param="email",
        description="The contact opens the email.",
    ),
    _T(
        "email_not_opened",
        "Email not opened within a period",
        "email",
        "email_not_opened",
        (_EMAIL, _WITHIN),
        keyed_by_journey=True,
        conditions=_equals("email_id", "email"),
        lapse=Lapse("email_sent", "email_opened", "within", "email_id"),
        description="The contact did not open the email within the period after it was sent.",
    ),
    _T(
        "email_clicked",
        "Clicked any link",
        "email",
        "email_clicked",
        (_EMAIL,),
        key_param="email",
        description="The contact clicks any link in the email.",
    ),
    _T(
        "email_not_clicked",
        "No link clicked within a period",
        "email",
        "email_not_clicked",
        (_EMAIL, _WITHIN),
        keyed_by_journey=True,
        conditions=_equals("email_id", "email"),
        lapse=Lapse("email_sent", "email_clicked", "within", "email_id"),
        description="The contact clicked no link in the email within the period after it was sent.",
    ),
    _T(
        "email_link_clicked",
        "Clicked a specific link",
        "email",
        "email_clicked",
        (_EMAIL, _key("url", "Link URL")),
        key_param="email",
        conditions=_equals("url", "url"),
        description="The contact clicks the given link in the given email.",
    ),
    _T(
        "survey_response",
        "Survey response",
        "email",
        "survey_answered",
        (_key("survey", "Survey", "surveys"),),
        key_param="survey",
        description="The contact answers the survey.",
    ),
]

_INTERACTION = [
    _T(
        "email_delivered",
        "Interaction: email delivered",
        "interaction",
        "email_delivered",
        (_EMAIL,),
        key_param="email",
        interaction=True,
        description="The email reached the contact's mailbox.",
    ),
    _T(
        "email_not_delivered",
        "Interaction: email not delivered",
        "interaction",
        "email_not_delivered",
        (_EMAIL,),
        key_param="email",
        interaction=True,
        description="The email bounced or was refused.",
    ),
    _T(
        "interaction_email_opened",
        "Interaction: email opened",
        "interaction",
        "email_opened",
        (_EMAIL,),
        key_param="email",
        interaction=True,
        description="The contact opened the email (as an interaction trigger).",
    ),
]

_SMS = _key("sms", "Text name", required=False,
            help="The send_sms step's text name; empty: any text")
_SMS_INTERACTION = [
    _T(
        "sms_delivered",
        "Interaction: SMS delivered",
        "interaction",
        "sms_delivered",
        (_SMS,),
        key_param="sms",
        interaction=True,
        description="The carrier reported the text delivered to the contact's phone.",
    ),
    _T(
        "sms_not_delivered",
        "Interaction: SMS not delivered",
        "interaction",
        "sms_not_delivered",
        (_SMS,),
        key_param="sms",
        interaction=True,
        description="The text was undelivered or failed (Twilio's error code is the reason).",
    ),
    _T(
        "sms_replied",
        "Interaction: SMS replied",
        "interaction",
        "sms_replied",
        (_SMS,),
        key_param="sms",
        interaction=True,
        description="The contact answered the text (STOP, START and HELP replies too: see event.keyword).",
    ),
]

_INTEGRATIONS = [
    _T(
        "journey_api",
        "Journey API call",
        "api",
        "journey_api_call",
        keyed_by_journey=True,
        description="An HTTP call to this journey's own trigger endpoint (shown in the builder).",
    ),
    _T(
        "api_event",
        "Events API: named event",
        "api",
        "custom_event",
        (_key("name", "Event name"),),
        key_param="name",
        description="An event with this name is posted to the events endpoint for the contact.",
    ),
    _T(
        "custom_trigger",
        "Custom trigger",
        "api",
        "custom_trigger",
        (_key("trigger", "Custom trigger", "custom_triggers"),),
        key_param="trigger",
        description="A business event the admin defines (name and attributes); filter on event.<attribute>.",
    ),
    _T(
        "business_trigger",
        "Business trigger",
        "api",
        "business_event",
        (
            Param(
                "trigger",
                "choice",
                label="Business event",
                choices=(
                    "contact_created",
                    "contact_email_updated",
                    "contact_phone_updated",
                    "contact_address_updated",
                    "lead_created",
                    "lead_qualified",
                    "opportunity_won",
                    "opportunity_lost",
                    "case_created",
                    "case_resolved",
                ),
            ),
        ),
        key_param="trigger",
        description="A CRM record (sales, service) is created or updated, e.g. contact created, email updated.",
    ),
    _T(
        "eventbrite_registered_any",
        "Eventbrite: registered for any event",
        "api",
        "eventbrite_registered",
        description="Eventbrite reports the contact registered for any event.",
    ),
    _T(
        "eventbrite_registered_event",
        "Eventbrite: registered for an event",
        "api",
        "eventbrite_registered",
        (_key("event_id", "Eventbrite event", "eventbrite_events"),),
        key_param="event_id",
        description="Eventbrite reports the contact registered for the event.",
    ),
    _T(
        "eventbrite_ticket_any",
        "Eventbrite: bought a ticket for any event",
        "api",
        "eventbrite_ticket_bought",
        description="Eventbrite reports the contact bought a ticket for any event.",
    ),
    _T(
        "eventbrite_ticket_event",
        "Eventbrite: bought a ticket for an event",
        "api",
        "eventbrite_ticket_bought",
        (_key("event_id", "Eventbrite event", "eventbrite_events"),),
        key_param="event_id",
        description="Eventbrite reports the contact bought a ticket for the event.",
    ),
    _T(
        "livechat_chat_closed",
        "LiveChat: chat closed",
        "api",
        "chat_closed",
        description="A LiveChat conversation with the contact closes.",
    ),
    _T(
        "zapier_event",
        "Zapier custom event",
        "api",
        "zapier_event",
        (Param("zap", label="Zap name", required=False),),
        key_param="zap",
        description="An email address collected by a Zap (any Zap when empty).",
    ),
]

CATALOG: dict[str, TriggerType] = {
    t.name: t for t in _AUDIENCE + _DATES + _ECOMMERCE + _EMAIL_GROUP + _INTERACTION + _SMS_INTERACTION
    + _INTEGRATIONS
}

GROUP_LABELS = {
    "audience": "Audience and record changes",
    "dates": "Date-based",
    "ecommerce": "E-commerce",
    "email": "Email engagement",
    "interaction": "Interaction triggers (Dynamics 365 style)",
    "api": "API and integrations",
}


def trigger_type(name: str) -> TriggerType:
    """Look a starting-point type up; the error lists what exists."""
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(
            f"unknown starting point type {name!r}; known: {', '.join(sorted(CATALOG))}"
        ) from None


def catalog_as_json() -> dict[str, Any]:
    """The catalogue for the UI and ``GET /api/catalog``: types grouped, params as form fields."""
    return {
        "groups": [
            {
                "name": g,
                "label": label,
                "types": [t.to_json() for t in CATALOG.values() if t.group == g],
            }
            for g, label in GROUP_LABELS.items()
        ],
        "events": {name: spec.to_json() for name, spec in CANONICAL_EVENTS.items()},
        "record_events": {name: spec.to_json() for name, spec in RECORD_EVENTS.items()},
    }


# --- canonical events -------------------------------------------------------------------


@dataclass(frozen=True)
class CanonicalEvent:
    """One event type the runtime and connectors emit, with its routing ``key`` property.

    ``key`` names the property whose value is the event's routing key (``tag`` for
    ``tag_added``; ``journey`` for events addressed to one journey; ``None``: no key).
    Conditions read the properties as ``event.<name>``; dates are ISO 8601 text.
    """

    description: str
    key: str | None
    properties: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "key": self.key,
            "properties": dict(self.properties),
        }


_E = CanonicalEvent
_ORDER_PROPS = {
    "order_id": "the order's id in the shop or CRM",
    "products": "list of product ids",
    "categories": "list of category ids",
    "total": "order total (number)",
    "currency": "ISO 4217 code",
    "cart_id": "the cart the order completes, when it came from one (ends that cart's journey)",
}
_CART_PROPS = {
    "cart_id": "the cart's id",
    "products": "list of product ids",
    "categories": "list of category ids",
    "total": "cart total (number)",
    "currency": "ISO 4217 code",
    "checkout_url": "link back to the cart",
}
_EMAIL_PROPS = {
    "email_id": "the email (campaign, template or message definition) id",
    "message_id": "the id of this one sending",
}
_SMS_PROPS = {
    "sms_id": "the text's name (the send_sms step's sms_id)",
    "sid": "Twilio's message id (SM...)",
}
_DATE_PROPS = {
    "journey": "the journey id",
    "starting_point": "the starting point id",
    "field": "the contact date field (absent for a fixed date)",
    "date": "the ISO date that is due (after the offset)",
}

CANONICAL_EVENTS: dict[str, CanonicalEvent] = {
    "subscribed": _E(
        "The contact subscribed or was added to a list.", "list", {"list": "list / audience id"}
    ),
    "unsubscribed": _E(
        "The contact unsubscribed from a list.", "list", {"list": "list / audience id"}
    ),
    "tag_added": _E("A tag was added to the contact.", "tag", {"tag": "the tag"}),
    "tag_removed": _E("A tag was removed from the contact.", "tag", {"tag": "the tag"}),
    "group_joined": _E("The contact joined a group or list.", "group", {"group": "group id"}),
    "group_left": _E("The contact left a group or list.", "group", {"group": "group id"}),
    "field_changed": _E(
        "A contact field changed value (one event per field). Sent in, it sets the field "
        "in the mirror first; `before` is then the mirror's old value.",
        "field",
        {"field": "field name", "before": "old value (absent when empty)", "after": "new value"},
    ),
    "contact_updated": _E(
        "Any change to the contact record; re-checks held conditions.",
        None,
        {"changed_fields": "list of field names"},
    ),
    "page_visited": _E(
        "The contact visited a page of the tracked site.",
        "url",
        {"url": "page URL", "title": "page title", "referrer": "referrer URL"},
    ),
    "site_link_clicked": _E(
        "The contact clicked a link on the tracked site.",
        "url",
        {"url": "link URL", "page": "URL of the page holding the link"},
    ),
    "manual_add": _E(
        "A user added the contact to one journey by hand.",
        "journey",
        {"journey": "the journey id", "added_by": "user name"},
    ),
    "record_changed": _E(
        "A record of a table linked to the contact changed. Sent in with table contact, "
        "`record` updates the mirror's fields; another table's record is kept as the "
        "contact's related record, read as record.<table>.<field>.",
        "table",
        {
            "table": "contact, lead, order or a custom table",
            "record_id": "record id",
            "change": "created, updated or deleted",
            "changed_fields": "list of field names",
            "record": "the record's fields after the change (object)",
        },
    ),
    "form_submitted": _E(
        "The contact submitted a form.",
        "form",
        {"form": "form id", "answers": "object of field -> answer"},
    ),
    "segment_joined": _E(
        "The contact became a member of a saved segment.",
        "segment",
        {
            "segment": "segment id",
            "existing": "true when emitted at publish for a current member",
            "journey": "with existing: the journey published (only it admits the event)",
        },
    ),
    "segment_left": _E(
        "The contact stopped matching a saved segment.", "segment", {"segment": "segment id"}
    ),
    "date_due": _E(
        "A date-based starting point is due for the contact (from the date index).",
        "journey",
        _DATE_PROPS,
    ),
    "purchase": _E("The contact bought something.", None, _ORDER_PROPS),
    "purchase_lapsed": _E(
        "The set time has passed since the contact's last purchase.",
        "journey",
        {
            "journey": "the journey id",
            "last_order_id": "the last order",
            "last_purchase_at": "ISO datetime of the last purchase",
        },
    ),
    "cart_updated": _E("The contact created or changed a cart.", None, _CART_PROPS),
    "cart_abandoned": _E(
        "A cart saw no checkout for the journey's set time.",
        "journey",
        {
            "journey": "the journey id",
            **_CART_PROPS,
            "idle_seconds": "seconds since the last change",
        },
    ),
    "order_confirmed": _E("An order was confirmed.", None, _ORDER_PROPS),
    "order_cancelled": _E("An order was cancelled.", None, _ORDER_PROPS),
    "order_invoiced": _E(
        "An invoice was issued for an order.",
        None,
        {**_ORDER_PROPS, "invoice_url": "link to the invoice"},
    ),
    "order_shipped": _E(
        "An order was shipped.", None, {**_ORDER_PROPS, "tracking_url": "carrier tracking link"}
    ),
    "order_refunded": _E(
        "An order was refunded.",
        None,
        {**_ORDER_PROPS, "refund_amount": "amount refunded (number)"},
    ),
    "email_sent": _E("An email was sent to the contact.", "email_id", _EMAIL_PROPS),
    "email_delivered": _E("An email reached the contact's mailbox.", "email_id", _EMAIL_PROPS),
    "email_not_delivered": _E(
        "An email bounced or was refused.",
        "email_id",
        {**_EMAIL_PROPS, "reason": "hard_bounce, soft_bounce, blocked or invalid"},
    ),
    "email_opened": _E("The contact opened an email.", "email_id", _EMAIL_PROPS),
    "email_clicked": _E(
        "The contact clicked a link in an email.",
        "email_id",
        {**_EMAIL_PROPS, "url": "the link URL"},
    ),
    "email_not_opened": _E(
        "An email sent was not opened within the journey's period.",
        "journey",
        {"journey": "the journey id", **_EMAIL_PROPS, "sent_at": "ISO datetime"},
    ),
    "email_not_clicked": _E(
        "No link of an email sent was clicked within the journey's period.",
        "journey",
        {"journey": "the journey id", **_EMAIL_PROPS, "sent_at": "ISO datetime"},
    ),
    "sms_sent": _E("A text was sent to the contact.", "sms_id", _SMS_PROPS),
    "sms_delivered": _E("A text reached the contact's phone.", "sms_id",
                        {**_SMS_PROPS, "status": "delivered or read"}),
    "sms_not_delivered": _E(
        "A text was undelivered or failed.",
        "sms_id",
        {**_SMS_PROPS, "status": "undelivered or failed", "reason": "Twilio error <code>, or the status"},
    ),
    "sms_replied": _E(
        "The contact replied to a text.",
        "sms_id",
        {
            "sms_id": "the name of the text replied to",
            "sid": "Twilio's id of the reply",
            "in_reply_to": "Twilio's id of the text replied to",
            "body": "the reply's text",
            "keyword": "stop, start, help, or empty for any other reply",
        },
    ),
    "survey_answered": _E(
        "The contact answered a survey.",
        "survey",
        {"survey": "survey id", "answers": "object of question -> answer"},
    ),
    "journey_api_call": _E(
        "A call to one journey's own trigger endpoint.",
        "journey",
        {"journey": "the journey id", "payload": "the JSON body posted (object)"},
    ),
    "custom_event": _E(
        "An event posted to the events API.",
        "name",
        {"name": "event name", "<attribute>": "any attribute posted with it, at top level"},
    ),
    "custom_trigger": _E(
        "A custom trigger the admin defined fired.",
        "trigger",
        {"trigger": "custom trigger name", "<attribute>": "its declared attributes, at top level"},
    ),
    "business_event": _E(
        "A CRM business event (sales, service).",
        "trigger",
        {
            "trigger": "one of the business_trigger choices",
            "table": "table",
            "record_id": "record id",
            "changed_fields": "list of field names",
        },
    ),
    "eventbrite_registered": _E(
        "Eventbrite reports a registration.",
        "event_id",
        {
            "event_id": "Eventbrite event id",
            "event_name": "event name",
            "attendee_id": "attendee id",
        },
    ),
    "eventbrite_ticket_bought": _E(
        "Eventbrite reports a ticket bought.",
        "event_id",
        {
            "event_id": "Eventbrite event id",
            "event_name": "event name",
            "ticket_class": "ticket class",
            "order_id": "Eventbrite order id",
        },
    ),
    "chat_closed": _E(
        "A LiveChat conversation with the contact closed.",
        None,
        {"chat_id": "chat id", "agent": "agent name", "rating": "good, bad or absent"},
    ),
    "zapier_event": _E(
        "A Zap collected the contact's email address.",
        "zap",
        {"zap": "zap name", "email": "email address", "data": "other fields sent (object)"},
    ),
}

# Events that carry record data in. They are accepted from the events API, hosts and
# ``simulate``, and never reach a journey as they are: the contact mirror applies them and
# emits the canonical events above for what actually changed (``runtime.mirror``).
RECORD_EVENTS: dict[str, CanonicalEvent] = {
    "contact_upserted": _E(
        "The host's full contact record as it is now (a sync page or webhook snapshot). "
        "Replaces the mirror's fields, tags and groups; emits field_changed, tag_added, "
        "tag_removed, group_joined, group_left and record_changed for the differences.",
        None,
        {
            "external_id": "the host's contact id",
            "email": "email address",
            "first_name": "first name (also first_name, last_name, phone, owner, time_zone, "
            "language, birthday, created_at, each a field)",
            "fields": "object of field -> value (every other field)",
            "tags": "list of tags",
            "groups": "list of groups / lists",
            "version": "the record's version: the same version twice is one change",
            "deleted": "true when the host deleted the contact",
        },
    ),
    "contact_deleted": _E(
        "The host deleted the contact: the mirror marks it deleted and emits record_changed "
        "(table contact, change deleted).",
        None,
        {},
    ),
    "fields_updated": _E(
        "Some of the contact's fields changed (a partial update; our own write-backs use it). "
        "Emits field_changed per field whose value differs from the mirror's.",
        None,
        {"fields": "object of field -> new value"},
    ),
}

"""The catalogue of starting-point types: what each listens to, its parameters, its rules.

A starting point is data (``StartingPoint(type, params)``); its type here says which
canonical event it listens to, which parameter routes it (so an event only reaches
journeys that can use it), and which extra tests on the event's properties it adds.
The UI renders its forms from ``Param`` and the compiler reads ``event_conditions``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from crm_journeys.definition.model import Condition, Leaf

ParamType = Literal["text", "number", "integer", "duration", "date", "time", "bool", "list", "choice"]


@dataclass(frozen=True)
class Param:
    """One parameter of a starting point, step or action, as a form field.

    ``picker`` names a list the connected CRM fills (tags, groups, fields, emails,
    products, forms, segments, journeys, owners); ``choices`` a fixed list.
    """

    name: str
    type: ParamType = "text"
    label: str = ""
    required: bool = True
    picker: str | None = None
    choices: tuple[str, ...] = ()
    default: Any = None
    help: str = ""


@dataclass(frozen=True)
class TriggerType:
    """One starting-point type.

    Attributes:
        event: the canonical event type it listens to.
        key_param: the parameter whose value must equal the event's routing key
            (``tag`` for ``tag_added``); ``None`` listens to every key.
        exclusive: may not share a journey with any other starting point
            (abandoned cart, order notifications).
        schedule: ``"once"``/``"yearly"`` for date-based types, fired by the date index.
        entry_key: event property that keys the instance (one instance per cart/order).
        interaction: an interaction trigger; starts a journey only when the journey's
            settings allow it.
        conditions: builds extra tests on ``event.*`` properties from the params.
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
    conditions: Callable[[dict[str, Any]], list[Condition]] = field(
        default=lambda params: [], compare=False, repr=False
    )

    def routing_key(self, params: dict[str, Any]) -> str:
        """The key an event must carry to reach this starting point (``*`` for any)."""
        if self.key_param is None:
            return "*"
        value = params.get(self.key_param)
        return "*" if value in (None, "") else str(value)

    def event_conditions(self, params: dict[str, Any]) -> list[Condition]:
        return list(self.conditions(params))


def _any_of(prop: str, param: str) -> Callable[[dict[str, Any]], list[Condition]]:
    """Event property ``prop`` (a list) must share an item with params[param], when given."""

    def build(params: dict[str, Any]) -> list[Condition]:
        wanted = params.get(param)
        if not wanted:
            return []
        values = wanted if isinstance(wanted, list) else [wanted]
        return [Leaf(op="contains", field=f"event.{prop}", value=v) for v in values][:1] if len(values) == 1 else [
            _or([Leaf(op="contains", field=f"event.{prop}", value=v) for v in values])
        ]

    return build


def _or(items: list[Condition]) -> Condition:
    from crm_journeys.definition.model import Group

    return Group("any", tuple(items))


_T = TriggerType
CATALOG: dict[str, TriggerType] = {
    t.name: t
    for t in [
        _T("signup", "Subscribed / added to audience", "audience", "subscribed",
           (Param("list", label="List or audience", required=False, picker="groups"),), key_param="list"),
        _T("tag_added", "Tag added", "audience", "tag_added",
           (Param("tag", label="Tag", picker="tags"),), key_param="tag"),
        _T("tag_removed", "Tag removed", "audience", "tag_removed",
           (Param("tag", label="Tag", picker="tags"),), key_param="tag"),
        _T("joined_group", "Joined group", "audience", "group_joined",
           (Param("group", label="Group", picker="groups"),), key_param="group"),
        _T("form_submitted", "Form submitted", "audience", "form_submitted",
           (Param("form", label="Form", picker="forms"),), key_param="form"),
        _T("page_visited", "Page visited", "audience", "page_visited",
           (Param("url", label="Page URL"),), key_param="url"),
        _T("purchased_any", "Purchased any product", "ecommerce", "purchase"),
        _T("purchased_product", "Purchased a specific product", "ecommerce", "purchase",
           (Param("product", label="Product", picker="products"),),
           conditions=_any_of("products", "product")),
        _T("email_opened", "Email opened", "email", "email_opened",
           (Param("email", label="Email", picker="emails"),), key_param="email"),
        _T("email_clicked", "Clicked any link", "email", "email_clicked",
           (Param("email", label="Email", picker="emails"),), key_param="email"),
        _T("api_event", "Events API: named event", "api", "custom_event",
           (Param("name", label="Event name"),), key_param="name"),
        _T("birthday", "Birthday", "dates", "date_due",
           (Param("field", label="Birthday field", required=False, picker="fields", default="birthday"),
            Param("offset_days", "integer", label="Days before (-) or after (+)", required=False, default=0),
            Param("time", "time", label="Send time (contact's time zone)", required=False, default="09:00")),
           schedule="yearly"),
    ]
}


def trigger_type(name: str) -> TriggerType:
    """Look a starting-point type up; the error lists what exists."""
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(f"unknown starting point type {name!r}; known: {', '.join(sorted(CATALOG))}") from None

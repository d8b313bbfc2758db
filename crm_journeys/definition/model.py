"""The format-neutral journey model: plain frozen dataclasses built by ``schema.load_journey``.

Nothing here does I/O or evaluates anything; the compiler reads these objects and the
runtime reads the step parameters. The stored JSON document stays the source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

FORMAT_VERSION = 1

# --- conditions -------------------------------------------------------------------------

FIELD_OPS = (
    "eq", "neq", "contains", "not_contains", "starts_with", "gt", "gte", "lt", "lte",
    "in", "not_in", "is_set", "is_blank", "is_true", "is_false",
    "date_before", "date_after", "within_last_days", "within_next_days",
)
SET_OPS = ("has_tag", "not_has_tag", "in_group", "not_in_group", "in_segment", "not_in_segment")
ACTIVITY_OPS = ("email_sent", "email_opened", "email_clicked")
OPERATORS = FIELD_OPS + SET_OPS + ACTIVITY_OPS


@dataclass(frozen=True)
class Leaf:
    """One test from the closed operator set.

    ``field`` names a contact field (``language``) or an event property (``event.product``);
    set and activity operators take their operand in ``value`` (a tag, a group, a segment,
    an email id); ``days`` bounds date and activity tests ("opened within 7 days").
    """

    op: str
    field: str | None = None
    value: Any = None
    days: int | None = None


@dataclass(frozen=True)
class Group:
    """AND (``all``) or OR (``any``) over conditions; ``not`` is a group of one, negated."""

    mode: Literal["all", "any", "not"]
    items: tuple[Condition, ...]


Condition = Leaf | Group


ANY_EVENT = "any"  # an EventMatch type: every event of the contact


@dataclass(frozen=True)
class EventMatch:
    """Which canonical event a step, goal or exit rule waits for.

    ``type`` is a canonical event type (``email_opened``) or ``ANY_EVENT``; ``key`` narrows
    it (the email id), ``None`` meaning any; ``where`` tests the event's properties (fields
    ``event.<prop>``).
    """

    type: str
    key: str | None = None
    where: Condition | None = None


# --- entry ------------------------------------------------------------------------------

EntryMode = Literal["once", "every_time", "after_exit", "cooldown", "max_times"]


@dataclass(frozen=True)
class EntryPolicy:
    """How often one contact may enter: once ever, every time, again after exiting,
    again after a cooldown since the last entry, or at most ``max_entries`` times."""

    mode: EntryMode = "once"
    cooldown: timedelta | None = None
    max_entries: int | None = None


@dataclass(frozen=True)
class StartingPoint:
    """One way in. ``type`` names an entry of ``triggers.CATALOG``; ``next`` overrides the
    journey's ``first_step`` for contacts entering here."""

    id: str
    type: str
    params: dict[str, Any] = field(default_factory=dict)
    filter: Condition | None = None
    next: str | None = None


# --- steps ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    id: str
    label: str = ""

    def targets(self) -> dict[str, str | None]:
        """Named outgoing connections; ``None`` means the journey ends there."""
        return {}


@dataclass(frozen=True)
class ActionStep(Step):
    action: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    next: str | None = None
    run_multiple_times: bool = False

    def targets(self) -> dict[str, str | None]:
        return {"next": self.next}


@dataclass(frozen=True)
class WaitStep(Step):
    duration: timedelta = timedelta(0)
    next: str | None = None

    def targets(self) -> dict[str, str | None]:
        return {"next": self.next}


@dataclass(frozen=True)
class WaitUntilStep(Step):
    """Hold until a moment: a fixed ``date``, or a contact date ``field`` plus ``offset``,
    optionally moved to the next ``time`` of day on one of ``weekdays`` in the contact's
    time zone. With only ``time``/``weekdays`` it waits for the next such moment."""

    date: str | None = None
    field: str | None = None
    offset: timedelta = timedelta(0)
    time: str | None = None
    weekdays: tuple[str, ...] = ()
    next: str | None = None

    def targets(self) -> dict[str, str | None]:
        return {"next": self.next}


@dataclass(frozen=True)
class WaitAndCheckStep(Step):
    duration: timedelta = timedelta(0)
    condition: Condition = Group("all", ())
    yes: str | None = None
    no: str | None = None

    def targets(self) -> dict[str, str | None]:
        return {"yes": self.yes, "no": self.no}


@dataclass(frozen=True)
class ReactToEventStep(Step):
    event: EventMatch = EventMatch(ANY_EVENT)
    timeout: timedelta = timedelta(0)
    yes: str | None = None
    no: str | None = None

    def targets(self) -> dict[str, str | None]:
        return {"yes": self.yes, "no": self.no}


@dataclass(frozen=True)
class IfThenStep(Step):
    """Holds until ``condition`` is true (YES) or ``timeout`` passes (NO); re-checked on
    every record update of the contact."""

    condition: Condition = Group("all", ())
    timeout: timedelta = timedelta(0)
    yes: str | None = None
    no: str | None = None

    def targets(self) -> dict[str, str | None]:
        return {"yes": self.yes, "no": self.no}


@dataclass(frozen=True)
class ConditionSplitStep(Step):
    condition: Condition = Group("all", ())
    yes: str | None = None
    no: str | None = None

    def targets(self) -> dict[str, str | None]:
        return {"yes": self.yes, "no": self.no}


@dataclass(frozen=True)
class Case:
    name: str
    condition: Condition
    next: str | None


@dataclass(frozen=True)
class MultiSplitStep(Step):
    """First matching case wins; ``default`` when none does."""

    cases: tuple[Case, ...] = ()
    default: str | None = None

    def targets(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {c.name: c.next for c in self.cases}
        out["default"] = self.default
        return out


@dataclass(frozen=True)
class Path:
    name: str
    percent: int
    next: str | None


@dataclass(frozen=True)
class RandomSplitStep(Step):
    """Deterministic per contact and step: the same contact always takes the same path."""

    paths: tuple[Path, ...] = ()

    def targets(self) -> dict[str, str | None]:
        return {p.name: p.next for p in self.paths}


@dataclass(frozen=True)
class JumpStep(Step):
    """Go back to ``to`` at most ``max_times`` per instance, then continue at ``next``."""

    to: str = ""
    max_times: int = 1
    next: str | None = None

    def targets(self) -> dict[str, str | None]:
        return {"to": self.to, "next": self.next}


@dataclass(frozen=True)
class ExitStep(Step):
    pass


STEP_TYPES: dict[str, type[Step]] = {
    "action": ActionStep,
    "wait": WaitStep,
    "wait_until": WaitUntilStep,
    "wait_and_check": WaitAndCheckStep,
    "react_to_event": ReactToEventStep,
    "if_then": IfThenStep,
    "condition_split": ConditionSplitStep,
    "multi_split": MultiSplitStep,
    "random_split": RandomSplitStep,
    "jump": JumpStep,
    "exit": ExitStep,
}

# Steps where a contact is held and a wake-up row is written.
HOLDING_STEPS = (WaitStep, WaitUntilStep, WaitAndCheckStep, ReactToEventStep, IfThenStep)


# --- goals, exits, journey --------------------------------------------------------------

@dataclass(frozen=True)
class Goal:
    """Reached when ``condition`` holds or ``event`` arrives, checked on every event of an
    instance in flight; ``then`` is ``None`` to exit, or a step to move the contact to."""

    id: str
    label: str = ""
    condition: Condition | None = None
    event: EventMatch | None = None
    then: str | None = None


@dataclass(frozen=True)
class ExitRule:
    id: str
    condition: Condition | None = None
    event: EventMatch | None = None


@dataclass(frozen=True)
class Settings:
    interaction_triggers_start: bool = False
    time_zone: str = "UTC"
    priority: int = 50  # which journey's marketing email wins when the contact policy allows one
    email_tracking: bool = True  # open pixel and tracked links in its emails


@dataclass(frozen=True)
class Journey:
    name: str
    starting_points: tuple[StartingPoint, ...]
    steps: tuple[Step, ...]
    first_step: str | None
    description: str = ""
    entry: EntryPolicy = EntryPolicy()
    entry_filter: Condition | None = None
    goals: tuple[Goal, ...] = ()
    exit_rules: tuple[ExitRule, ...] = ()
    settings: Settings = Settings()
    format_version: int = FORMAT_VERSION

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    @property
    def steps_by_id(self) -> dict[str, Step]:
        return {s.id: s for s in self.steps}

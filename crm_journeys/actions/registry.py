"""Strict registry of actions, filled from the ``crm_journeys.actions`` entry point group.

Built-in actions register exactly like third-party ones. Unknown names fail loudly with
the list of what is installed.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

from crm_journeys.actions.base import Action
from crm_journeys.errors import PluginNotFound

GROUP = "crm_journeys.actions"


@cache
def installed_actions() -> dict[str, type[Action[Any]]]:
    found: dict[str, type[Action[Any]]] = {}
    for ep in entry_points(group=GROUP):
        cls = ep.load()
        found[cls.name] = cls
    return dict(sorted(found.items()))


def load_action(name: str) -> type[Action[Any]]:
    actions = installed_actions()
    if name not in actions:
        raise PluginNotFound(f"No action {name!r}; installed: {', '.join(actions)}")
    return actions[name]

"""Strict registry of connectors, filled from the ``crm_journeys.connectors`` entry points.

The built-in adapters are registered in setup.cfg exactly as a third-party package
would register its own.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from crm_journeys.connectors.base import Connector
from crm_journeys.errors import PluginNotFound

GROUP = "crm_journeys.connectors"


@cache
def installed_connectors() -> dict[str, type[Connector]]:
    return dict(sorted((ep.name, ep.load()) for ep in entry_points(group=GROUP)))


def load_connector(name: str) -> type[Connector]:
    found = installed_connectors()
    if name not in found:
        raise PluginNotFound(f"No connector {name!r}; installed: {', '.join(found)}")
    return found[name]

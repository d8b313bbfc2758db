"""Strict registry of connectors, filled from the ``crm_journeys.connectors`` entry points.

The built-in adapters are registered in setup.cfg exactly as a third-party package
would register its own. Only the connector asked for is imported, so one broken plug-in
cannot take the others down; an unknown name says what is installed.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

from crm_journeys.connectors.base import Connector
from crm_journeys.errors import PluginNotFound

GROUP = "crm_journeys.connectors"


@cache
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name)}


def connector_names() -> list[str]:
    """Names of the installed connectors, sorted, without importing any of them."""
    return list(_entry_points())


@cache
def load_connector(name: str) -> type[Connector]:
    """The connector class registered as ``name``.

    Raises:
        PluginNotFound: no installed package registers ``name``, or what it registers
            is not a ``Connector`` subclass.
    """
    found = _entry_points()
    if name not in found:
        raise PluginNotFound(f"No connector {name!r}; installed: {', '.join(found) or 'none'}")
    cls = found[name].load()
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise PluginNotFound(f"Entry point {name!r} ({found[name].value}) is not a Connector")
    return cls


def installed_connectors() -> dict[str, type[Connector]]:
    """Every installed connector by name (imports them all)."""
    return {name: load_connector(name) for name in connector_names()}

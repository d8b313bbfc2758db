"""The strict connector registry, read from installed entry points."""

from __future__ import annotations

import pytest

from crm_journeys.connectors.base import Connector
from crm_journeys.connectors.registry import connector_names, installed_connectors, load_connector
from crm_journeys.errors import PluginNotFound

HOSTS = ["bottlecrm", "dynamics", "hubspot", "odoo", "salesforce"]


def test_every_host_adapter_is_registered_under_its_own_name():
    assert set(HOSTS) <= set(connector_names())
    for name in HOSTS:
        cls = load_connector(name)
        assert issubclass(cls, Connector) and cls.name == name and cls.label


def test_unknown_name_says_what_is_installed():
    with pytest.raises(PluginNotFound) as info:
        load_connector("hubspott")
    assert str(info.value).startswith("No connector 'hubspott'; installed: bottlecrm, dynamics, hubspot")


def test_installed_connectors_maps_names_to_classes():
    found = installed_connectors()
    assert list(found) == sorted(found) and found["odoo"].__name__ == "OdooConnector"

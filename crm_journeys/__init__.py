"""crm_journeys: customer journeys as a rules-engine plug-in for an existing CRM."""

__version__ = "0.1.0"

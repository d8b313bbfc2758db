"""Host CRM adapters, found through the ``crm_journeys.connectors`` entry point group."""

"""Inbound endpoints other systems call: CRM and integration webhooks, ESP and Twilio callbacks,
the tracked mail links and the CRM install flow. Each is verified by its own signature or
token; nothing here imports ``web.ui`` or ``web.api``.
"""

"""Domain queries and services the web front ends share: saved segments, trigger declarations,
integration secrets, usage, test mode, analytics queries, funnel, diff and its words, the
catalogue, entry explanations and timeline words. Below ``web``, above ``runtime``: nothing
here imports Flask blueprints or ``crm_journeys.web``.
"""

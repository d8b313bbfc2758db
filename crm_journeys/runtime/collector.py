"""Garbage-collector settings for the processes crm_journeys owns (``serve``, ``worker``).

Each event allocates a few hundred short-lived objects (the engine parses every message it
passes between rules), so with CPython's default first-generation threshold of 700 the
collector runs every few events and re-walks young objects that reference counting frees a
moment later anyway: measured, it cost ~10 % of dispatch throughput (bench P1). The batch
code leaves no reference cycles behind, so collecting rarely loses no memory. Processes that
embed the extension in their own app keep their own settings: this is only called by the
commands that start a process.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 50, 100)


def tune_collector() -> None:
    """Move what startup allocated out of the collector's sight and collect less often."""
    gc.collect()
    gc.freeze()  # modules, compiled rulesets, schemas: never garbage, never scanned again
    gc.set_threshold(*THRESHOLDS)

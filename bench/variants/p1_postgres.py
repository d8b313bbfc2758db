"""P1's end-to-end dispatch (ingest in pages of 200, ``Dispatcher.run_once``) on a fresh
PostgreSQL database: ``python bench/variants/p1_postgres.py [EVENTS]`` from the project
folder (with ``PYTHONPATH=bench/variants:.`` and ``CJ_VARIANT`` to measure a variant)."""

from __future__ import annotations

import sys

from bench import workload
from bench.common import postgres_url
from bench.figures import end_to_end
from crm_journeys.runtime.collector import tune_collector
from crm_journeys.storage.db import Database


def main(n: int) -> None:
    tune_collector()
    with postgres_url() as url:
        db = Database(url)
        db.upgrade()
        try:
            run = end_to_end(db, n, [workload.welcome()])
        finally:
            db.dispose()
    print(f"P1-pg: {run['rate']:,.0f} events/s end to end ({n:,} events)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5_000)

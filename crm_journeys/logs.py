"""Log lines as JSON, one object per line, with the ids of what they are about.

The CLI configures it (``--log-level`` or ``CRM_JOURNEYS_LOG_LEVEL``; ``--log-format text``
for a terminal). A line about a tenant, journey, instance, outbox row, lane or worker loop
carries those ids as fields (pass them as ``extra={"tenant_id": ...}``), so an operator can
follow one row or one tenant through the log. Messages and tracebacks go through the
same redaction as the HTTP client's errors (bearer and basic credentials, secret-looking
query parameters and JSON fields), so a secret that slipped into an exception message is
masked here too. stdlib ``logging`` only: a formatter is all that is needed.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from crm_journeys.connectors.http import Redactor

CONTEXT = ("tenant_id", "journey_id", "instance_id", "outbox_id", "lane", "loop", "worker")
_redact = Redactor()
_OURS = "_crm_journeys_handler"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name,
            "message": _redact(record.getMessage()),
        }
        for key in CONTEXT:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["error"] = _redact(self.formatException(record.exc_info))
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """For a terminal: the usual line, ids appended, same redaction."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(f"{k}={getattr(record, k)}" for k in CONTEXT if getattr(record, k, None) is not None)
        return _redact(super().format(record) + (f" [{ids}]" if ids else ""))


QUIET = ("alembic.runtime.plugins",)  # loggers kept at WARNING whatever the level


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Route the root logger to stderr through our formatter (replacing our own earlier
    handler, not anybody else's)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    setattr(handler, _OURS, True)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for chatty in QUIET:  # their INFO lines say nothing an operator acts on
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))

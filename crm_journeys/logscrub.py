"""Secrets sent in query strings (Zapier's ``?secret=``, ``?token=``) kept out of the logs.

Some senders can only put a secret in the URL, and access logs (werkzeug's, gunicorn's)
write the whole request line. A logging filter on those loggers replaces the value of any
secret-looking query parameter with ``[redacted]`` before a handler formats the record.
"""

from __future__ import annotations

import logging
import re

SECRET_PARAM = re.compile(r"(?i)([?&](?:secret|token|key|api_key|access_token|code|password)=)[^&\s\"']*")
ACCESS_LOGGERS = ("werkzeug", "gunicorn.access")


def scrub(text: str) -> str:
    return SECRET_PARAM.sub(r"\1[redacted]", text)


class ScrubQuerySecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def install() -> None:
    """Attach the filter once to each access logger (idempotent: app factories run often)."""
    for name in ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ScrubQuerySecrets) for f in logger.filters):
            logger.addFilter(ScrubQuerySecrets())

"""JSON log lines: one object per line, the ids of what they are about, secrets masked."""

from __future__ import annotations

import io
import json
import logging

from crm_journeys.logs import JsonFormatter


def _line(**extra: object) -> dict[str, object]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("crm_journeys.test_logs")
    log.addHandler(handler)
    log.propagate = False
    try:
        try:
            raise RuntimeError("POST https://api.example/v1?access_token=abc123secret failed: Bearer eyJhbGciOiJIUzI1")
        except RuntimeError:
            log.exception("outbox row %s failed with Authorization: Bearer sk_live_abcdef123456", 7, extra=extra)
    finally:
        log.removeHandler(handler)
    [text] = out.getvalue().splitlines()
    return dict(json.loads(text))


def test_a_line_carries_ids_and_no_secret() -> None:
    line = _line(tenant_id=3, journey_id=9, outbox_id=7, lane="3:crm")
    assert line["level"] == "error" and line["logger"] == "crm_journeys.test_logs"
    assert (line["tenant_id"], line["journey_id"], line["outbox_id"], line["lane"]) == (3, 9, 7, "3:crm")
    assert "outbox row 7 failed" in str(line["message"])
    text = json.dumps(line)
    for secret in ("sk_live_abcdef123456", "abc123secret", "eyJhbGciOiJIUzI1"):
        assert secret not in text
    assert "RuntimeError" in str(line["error"])


def test_a_line_without_ids_has_none() -> None:
    line = _line()
    assert not {"tenant_id", "journey_id", "instance_id", "outbox_id"} & set(line)

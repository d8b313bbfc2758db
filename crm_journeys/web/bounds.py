"""Input bounded and typed at the edge, before any view runs: what no view should see.

- ``MAX_CONTENT_LENGTH`` (2 MB unless the app sets its own): a bigger body is a 413.
- Ids in URLs are integers below 2**63 (``BoundedInt``, at most 19 digits): a larger one
  matches no route (404) instead of overflowing a database integer (a 500).
- JSON bodies nest at most ``MAX_DEPTH`` levels, measured on the raw bytes before parsing
  (the parser and every recursive walk after it would hit Python's recursion limit).
- No text may hold a NUL or a lone surrogate (PostgreSQL refuses NUL; a lone surrogate
  cannot be encoded to UTF-8 at all): JSON strings and keys, form fields, query values.

Refusals are 400s in the API's one error body (``web.errors``) naming where the bad
value is; the UI's forms get the plain 400 page.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Flask, request
from werkzeug.routing import IntegerConverter

from crm_journeys.web.errors import ApiError

MAX_ID = 2**63 - 1
MAX_BODY = 2 * 1024 * 1024
MAX_DEPTH = 64
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


class BoundedInt(IntegerConverter):
    """``<int:...>`` for our routes: 1 to 19 digits and below 2**63."""

    regex = r"\d{1,19}"

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def json_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in a JSON text, without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def bad_text_path(value: Any, path: str = "body") -> str | None:
    """The path of the first string (or key) holding NUL or a lone surrogate, else None."""
    stack = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if _BAD_TEXT.search(item):
                return where
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and _BAD_TEXT.search(key):
                    return where
                stack.append((f"{where}.{key}", child))
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(item))
    return None


def check_request() -> None:
    """Refuse what no view of ours may receive (see the module docstring)."""
    if not (request.blueprint or "").startswith("crm_journeys"):
        return
    fields = [("query", request.args)]
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        fields.append(("form", request.form))
    for name, values in fields:
        for key, value in values.items(multi=True):
            if _BAD_TEXT.search(key) or _BAD_TEXT.search(value):
                _refuse(f"{name}.{key}", "must not contain NUL bytes or lone surrogates")
    if request.is_json and request.content_length != 0:
        raw = request.get_data(cache=True)
        # fast paths (the events API is hot): few brackets cannot nest deep, and without a
        # \u escape JSON text can hold neither NUL (raw control bytes are invalid JSON) nor
        # a lone surrogate (UTF-8 cannot encode one)
        if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and json_depth(raw) > MAX_DEPTH:
            _refuse("body", f"nests deeper than {MAX_DEPTH} levels")
        if b"\\u" not in raw:
            return
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return  # the view's own parsing reports malformed JSON
        where = bad_text_path(body)
        if where:
            _refuse(where, "must not contain NUL bytes or lone surrogates")


def _refuse(where: str, reason: str) -> None:
    raise ApiError(400, "invalid_input", f"{where} {reason}.", {where: [reason]})


def init_app(app: Flask) -> None:
    if app.config.get("MAX_CONTENT_LENGTH") is None:
        app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.before_request(check_request)
    app.register_error_handler(ApiError, _api_error_anywhere)


def _api_error_anywhere(exc: ApiError) -> Any:
    """ApiErrors raised before a view (here) reach no blueprint handler: answer them the same way."""
    from crm_journeys.web.errors import error_response

    return error_response(exc.status, exc.code, exc.message, exc.errors)

"""Between web forms and the journey document: parse posted fields into document parts
and put each validation error next to the form field it concerns, in plain words
(conditions have their own tree editor in ``condition_form``).

Form field names are the document paths relative to the element being edited
(``params.subject``, ``branches.yes``, ``condition.g0.r1.op``), so a DefinitionError path
maps to a field by dropping the element's prefix.
"""

from __future__ import annotations

import json
import re
from typing import Any

from werkzeug.datastructures import MultiDict

PLAIN = {
    "Shorter than minimum length 1.": "This can't be empty.",
    "Missing data for required field.": "This is required.",
    "Field may not be null.": "This is required.",
    "Not a valid integer.": "Enter a whole number.",
    "Not a valid number.": "Enter a number.",
    "Not a valid email address.": "Enter an email address.",
    "Unknown field.": "This is not used here.",
    "required": "This is required.",
}
_NUMBER = re.compile(r"^-?(0|[1-9]\d*)(\.\d+)?$")
MAX_ROWS_EXTRA = 2


def plain(message: str) -> str:
    return PLAIN.get(message, message[:1].upper() + message[1:])


def errors_under(errors: dict[str, list[str]], prefix: str) -> dict[str, list[str]]:
    """Errors of one element, keyed by the path inside it ('' for the element itself)."""
    out: dict[str, list[str]] = {}
    for path, msgs in errors.items():
        if path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "["):
            rel = path[len(prefix):].lstrip(".")
            out.setdefault(rel, []).extend(plain(m) for m in msgs)
    return out


def field_errors(errors: dict[str, list[str]], name: str) -> list[str]:
    """Messages for a field and anything below it (``condition`` gets ``condition.all[0].value``)."""
    return [m for path, msgs in errors.items() if path == name or path.startswith(name + ".")
            or path.startswith(name + "[") for m in msgs]


# --- scalar values ----------------------------------------------------------------------

def parse_value(kind: str, raw: str | None, *, present: bool = False) -> Any:
    """A posted text as the parameter type wants it; ``None`` when left empty.

    Wrong input is kept as text so validation reports it next to the field.
    """
    text = (raw or "").strip()
    if kind == "bool":
        return present
    if text == "":
        return None
    if kind == "integer":
        return int(text) if re.fullmatch(r"-?\d+", text) else text
    if kind == "number":
        return float(text) if _NUMBER.match(text) else text
    if kind == "list":
        return [item.strip() for item in text.split(",") if item.strip()]
    if kind == "object":
        try:
            return json.loads(text)
        except ValueError:
            return text
    if kind == "value":
        return scalar(text)
    return text


def scalar(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    if _NUMBER.match(text):
        return float(text) if "." in text else int(text)
    return text


def show_value(value: Any) -> str:
    """A document value as form text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def parse_params(specs: list[dict[str, Any]], form: MultiDict[str, str], prefix: str) -> dict[str, Any]:
    out = {}
    for spec in specs:
        name = f"{prefix}.{spec['name']}"
        if spec.get("type") == "list" and spec.get("choices"):
            value: Any = form.getlist(name) or None
        else:
            value = parse_value(spec.get("type", "text"), form.get(name), present=name in form)
        # An unticked optional box is left out, unless it defaults to true: then "no" must be kept.
        unticked = spec.get("type") == "bool" and value is False and not spec.get("required")
        if value is not None and not (unticked and not spec.get("default")):
            out[spec["name"]] = value
    return out

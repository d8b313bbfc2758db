"""Exports a marshmallow parameter schema as form fields, so the UI renders action forms."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, missing
from marshmallow.validate import OneOf, Range

_TYPES = [
    (fields.Boolean, "bool"), (fields.Integer, "integer"), (fields.Float, "number"),
    (fields.List, "list"), (fields.Dict, "object"), (fields.Email, "email"), (fields.Url, "url"),
    (fields.String, "text"),
]


def describe_schema(schema_cls: type[Schema]) -> list[dict[str, Any]]:
    out = []
    for name, fld in schema_cls().fields.items():
        kind = next((label for cls, label in _TYPES if isinstance(fld, cls)), "text")
        entry: dict[str, Any] = {"name": name, "type": kind, "required": fld.required,
                                 "label": fld.metadata.get("label", name.replace("_", " ").capitalize())}
        for key in ("picker", "help", "widget"):
            if key in fld.metadata:
                entry[key] = fld.metadata[key]
        if fld.load_default is not None and fld.load_default is not missing and not callable(fld.load_default):
            entry["default"] = fld.load_default
        for validator in fld.validators:
            if isinstance(validator, OneOf):
                entry["choices"] = list(validator.choices)
            if isinstance(validator, Range):
                entry["min"], entry["max"] = validator.min, validator.max
        out.append(entry)
    return out

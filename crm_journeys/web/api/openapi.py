"""The OpenAPI 3 document, generated from ``endpoint.OPERATIONS`` and the marshmallow schemas.

Because routes and the document come from the same declarations, every route appears
and every body shape is the one the view really loads and dumps.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, fields, validate

from crm_journeys.web.api.schemas import ErrorOut
from crm_journeys.web.endpoint import OPERATIONS, PAGE_HEADERS, Operation

_SIMPLE: list[tuple[type[fields.Field], dict[str, Any]]] = [
    (fields.AwareDateTime, {"type": "string", "format": "date-time"}),
    (fields.DateTime, {"type": "string", "format": "date-time"}),
    (fields.Email, {"type": "string", "format": "email"}),
    (fields.Boolean, {"type": "boolean"}),
    (fields.Integer, {"type": "integer"}),
    (fields.Float, {"type": "number"}),
    (fields.Number, {"type": "number"}),
    (fields.String, {"type": "string"}),
]
_RULE_ARG = re.compile(r"<(?:(\w+):)?(\w+)>")


class _Builder:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, schema_cls: type[Schema]) -> dict[str, Any]:
        name = schema_cls.__name__
        if name not in self.components:
            self.components[name] = {}  # reserve first: schemas may nest themselves
            self.components[name] = self.schema(schema_cls)
        return {"$ref": f"#/components/schemas/{name}"}

    def schema(self, schema_cls: type[Schema]) -> dict[str, Any]:
        props, required = {}, []
        for name, fld in schema_cls().fields.items():
            key = fld.data_key or name
            props[key] = self.field(fld)
            if fld.required:
                required.append(key)
        out: dict[str, Any] = {"type": "object", "properties": props}
        if required:
            out["required"] = required
        if getattr(schema_cls.Meta, "unknown", None) == "raise":
            out["additionalProperties"] = False
        return out

    def field(self, fld: fields.Field) -> dict[str, Any]:
        if isinstance(fld, fields.Nested):
            nested = fld.nested if isinstance(fld.nested, type) else type(fld.nested)
            out = self.ref(nested)
        elif isinstance(fld, fields.List):
            out = {"type": "array", "items": self.field(fld.inner)}
        elif isinstance(fld, fields.Dict):
            out = {"type": "object"}
            if fld.value_field is not None:
                out["additionalProperties"] = self.field(fld.value_field)
        else:
            out = next((dict(v) for cls, v in _SIMPLE if isinstance(fld, cls)), {})
        for v in fld.validators:
            if isinstance(v, validate.OneOf):
                out["enum"] = list(v.choices)
            elif isinstance(v, validate.Range):
                if v.min is not None:
                    out["minimum"] = v.min
                if v.max is not None:
                    out["maximum"] = v.max
        if fld.metadata.get("description"):
            out = {**out, "description": fld.metadata["description"]} if "$ref" not in out else \
                {"allOf": [out], "description": fld.metadata["description"]}
        if fld.allow_none and "$ref" not in out and "allOf" not in out:
            out["nullable"] = True
        return out


def openapi_path(rule: str) -> str:
    return _RULE_ARG.sub(lambda m: "{" + m.group(2) + "}", rule)


def _parameters(b: _Builder, op: Operation) -> list[dict[str, Any]]:
    params = [{"name": name, "in": "path", "required": True,
               "schema": {"type": "integer"} if conv == "int" else {"type": "string"}}
              for conv, name in _RULE_ARG.findall(op.rule)]
    if op.query is not None:
        for name, fld in op.query().fields.items():
            params.append({"name": fld.data_key or name, "in": "query", "required": bool(fld.required),
                           "schema": b.field(fld)})
    return params


def _operation(b: _Builder, op: Operation, prefix: str) -> dict[str, Any]:
    error = {"description": "error", "content": {"application/json": {"schema": b.ref(ErrorOut)}}}
    if op.raw_out is not None:
        body_schema: dict[str, Any] = op.raw_out
    elif op.out is not None:
        body_schema = {"type": "array", "items": b.ref(op.out)} if op.many else b.ref(op.out)
    else:
        body_schema = {"type": "object"}
    out: dict[str, Any] = {
        "operationId": f"{op.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', op.rule.lower()).strip('_')}",
        "summary": op.summary, "tags": [op.tag],
        "responses": {str(op.status): {"description": op.summary,
                                       "content": {"application/json": {"schema": body_schema}}},
                      "default": error},
    }
    if op.query is not None and "per_page" in op.query().fields:
        out["responses"][str(op.status)]["headers"] = {
            name: {"description": text, "schema": {"type": "integer"}} for name, text in PAGE_HEADERS.items()}
    if op.description:
        out["description"] = op.description
    params = _parameters(b, op)
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": b.ref(op.body)}}}
    if op.permission is None:
        out["security"] = []
    else:
        out["x-permission"] = op.permission
    return out


def openapi_document(prefix: str = "", version: str = "0.1.0") -> dict[str, Any]:
    """The OpenAPI 3.0 document of every registered API operation, paths under ``prefix``."""
    b = _Builder()
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(openapi_path(f"{prefix}{op.rule}"), {})[op.method.lower()] = _operation(b, op, prefix)
    return {
        "openapi": "3.0.3",
        "info": {"title": "crm_journeys API", "version": version,
                 "description": "Customer journeys for the CRM you already use. Every failure answers "
                                "with the Error body."},
        "paths": paths,
        "components": {
            "schemas": b.components,
            "securitySchemes": {
                "bearerToken": {"type": "http", "scheme": "bearer",
                                "description": "An API token of the tenant (crm-journeys token create)."},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "session",
                                  "description": "A signed-in user; unsafe methods also need X-CSRF-Token."},
            },
        },
        "security": [{"bearerToken": []}, {"sessionCookie": []}],
    }

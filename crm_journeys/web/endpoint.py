"""The ``@endpoint`` decorator: one declaration gives a route, its access rule, its strict
input and output schemas, and its OpenAPI operation, so the document cannot drift from
the implementation (``openapi.py`` reads ``OPERATIONS``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import Schema, ValidationError

from crm_journeys.definition.schema import flatten_errors
from crm_journeys.web.access import api_principal, deferred_access, require
from crm_journeys.web.errors import ApiError


@dataclass(frozen=True)
class Operation:
    rule: str
    method: str
    summary: str
    tag: str
    permission: str | None  # None: public (the endpoint checks its own secret)
    body: type[Schema] | None = None
    query: type[Schema] | None = None
    out: type[Schema] | None = None
    many: bool = False
    status: int = 200
    extra_statuses: tuple[int, ...] = ()
    description: str = ""
    raw_out: dict[str, Any] | None = field(default=None)  # a JSON schema when no marshmallow one fits


OPERATIONS: list[Operation] = []
PAGE_HEADERS = {"X-Total-Count": "how many items match in all pages", "X-Page": "this page (from 1)",
                "X-Per-Page": "items per page"}


@dataclass(frozen=True)
class Page:
    """One page of a list: the body stays a JSON array (clients of the unpaged lists keep
    working) and the totals travel in ``PAGE_HEADERS``."""

    items: list[Any]
    total: int
    page: int
    per_page: int


def page_window(query: dict[str, Any]) -> tuple[int, int, int]:
    """(limit, offset, page) from ``page``/``per_page`` or, for older clients, ``limit``/``offset``."""
    per_page = int(query.get("per_page") or query.get("limit") or 100)
    if query.get("page"):
        return per_page, (int(query["page"]) - 1) * per_page, int(query["page"])
    offset = int(query.get("offset") or 0)
    return per_page, offset, offset // per_page + 1


def endpoint(bp: Blueprint, rule: str, method: str, *, summary: str, tag: str, permission: str | None = "read",
             body: type[Schema] | None = None, query: type[Schema] | None = None,
             out: type[Schema] | None = None, many: bool = False, status: int = 200,
             extra_statuses: tuple[int, ...] = (), description: str = "",
             raw_out: dict[str, Any] | None = None,
             defer_access: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a JSON API view.

    The view receives ``principal`` (unless public), ``body`` and ``query`` (loaded dicts)
    as keyword arguments when schemas are given, and returns data for ``out`` (or a Response).

    With ``defer_access``, the view receives ``access`` (``web.access.Access``) instead of
    ``principal``, and ``load`` instead of ``body`` and ``query``: the events API checks a
    token in its group commit, not in a transaction of its own, and validates the input
    (``load()`` returns the loaded ``body`` and ``query``, or raises their 400/422) only
    once it knows the token, so a refused caller never pays for validation. A session is
    checked before the view runs.
    """
    if defer_access and permission is None:
        raise ValueError(f"{rule}: defer_access needs a permission to check")
    op = Operation(rule, method, summary, tag, permission, body, query, out, many, status,
                   extra_statuses, description, raw_out)
    OPERATIONS.append(op)

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(**kwargs: Any) -> Any:
            if defer_access:
                load = functools.partial(_load_inputs, query, body)
                result = view(access=deferred_access(str(permission)), load=load, **kwargs)
            else:
                _authorize(kwargs, permission)
                result = view(**kwargs, **_load_inputs(query, body))
            return _respond(result, out, many, status)

        bp.add_url_rule(rule, endpoint=f"{view.__name__}", view_func=wrapper, methods=[method])
        return wrapper

    return decorate


def _authorize(kwargs: dict[str, Any], permission: str | None) -> None:
    """Adds ``principal`` to the view's arguments, or raises 401/403 (public views: nothing)."""
    if permission is not None:
        principal = api_principal()
        require(principal, permission)
        kwargs["principal"] = principal


def _load_inputs(query: type[Schema] | None, body: type[Schema] | None) -> dict[str, Any]:
    """The loaded ``query`` and ``body`` arguments; raises the first error they give (400/422)."""
    inputs: dict[str, Any] = {}
    if query is not None:
        inputs["query"] = _load_query(query)
    if body is not None:
        inputs["body"] = _load_body(body)
    return inputs


def _respond(result: Any, out: type[Schema] | None, many: bool, status: int) -> Response:
    """The view's result as JSON with the operation's status (and page headers for a Page)."""
    if isinstance(result, Response):
        return result
    items = result.items if isinstance(result, Page) else result
    data = _instance(out, many).dump(items) if out is not None else items
    response = jsonify(data)
    response.status_code = status
    if isinstance(result, Page):
        response.headers.update({"X-Total-Count": str(result.total), "X-Page": str(result.page),
                                 "X-Per-Page": str(result.per_page)})
    return response


def _load_body(schema: type[Schema]) -> dict[str, Any]:
    payload = request.get_json(silent=True)
    if payload is None:
        if request.content_length or request.data:
            raise ApiError(400, "bad_json", "The body is not valid JSON.")
        payload = {}
    if not isinstance(payload, dict):
        raise ApiError(422, "invalid_request", "The body must be a JSON object.", {"": ["must be an object"]})
    return _instance(schema).load(payload)  # ValidationError -> the one error body


def _load_query(schema: type[Schema]) -> dict[str, Any]:
    try:
        return _instance(schema).load(request.args.to_dict())
    except ValidationError as exc:
        errors = {f"query.{path}": msgs for path, msgs in flatten_errors(exc.messages).items()}
        raise ApiError(422, "invalid_request", "The query string has invalid parameters.", errors) from None


@functools.cache
def _instance(schema: type[Schema], many: bool = False) -> Schema:
    """One instance per schema (and ``many``): building one per request cost more than the
    validation itself; loading and dumping keep no state on the instance."""
    return schema(many=many)

"""One error body for every API failure: ``{"code", "status", "message", "errors"}``.

``errors`` maps a JSON path (``steps[2].params.tag``, ``body.name``) to plain-language
messages, so a client puts each one next to the field it concerns.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from crm_journeys.definition.schema import flatten_errors
from crm_journeys.errors import DefinitionError, NotFound


class ApiError(Exception):
    """An error the API reports as is: HTTP status, a stable code, a sentence, field errors."""

    def __init__(self, status: int, code: str, message: str, errors: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.errors = errors or {}


def error_response(status: int, code: str, message: str,
                   errors: dict[str, list[str]] | None = None) -> Response:
    response = jsonify({"code": code, "status": status, "message": message, "errors": errors or {}})
    response.status_code = status
    return response


def _is_api_request() -> bool:
    prefix = current_app.config.get("CRM_JOURNEYS_URL_PREFIX", "")
    return request.path.startswith(f"{prefix}/api/") or request.path == f"{prefix}/api"


def register_error_handlers(bp: Blueprint) -> None:
    """Handlers for the API blueprint's own views, plus HTTP errors (404, 405) under ``/api``.

    The app-wide handler answers only for API paths, so a host application's pages keep
    their own error pages.
    """

    @bp.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Any:
        return error_response(exc.status, exc.code, exc.message, exc.errors)

    @bp.errorhandler(ValidationError)
    def _validation(exc: ValidationError) -> Any:
        errors = flatten_errors(exc.messages)
        return error_response(422, "invalid_request", "The request has invalid fields.", errors)

    @bp.errorhandler(DefinitionError)
    def _definition(exc: DefinitionError) -> Any:
        return error_response(422, "invalid_journey", "The journey is not valid yet.", exc.errors)

    @bp.errorhandler(NotFound)
    def _not_found(exc: NotFound) -> Any:
        return error_response(404, "not_found", str(exc))

    @bp.app_errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        if not _is_api_request():
            return exc
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name)

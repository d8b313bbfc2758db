"""Checks fake-host traffic against a host's published OpenAPI description (openapi-core).

Requests that break the description are refused with a 400, as a strict host would, and
recorded; responses the fake itself produces are checked too, so a fake cannot drift away
from the host it stands for. Security requirements are stripped: each fake checks its own
credentials, and openapi-core only warns about OAuth schemes.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.templating.paths.exceptions import PathNotFound
from werkzeug.wrappers import Request, Response

SPECS = Path("/work/shared/specs")
for candidate in (Path(__file__).resolve().parents[3] / "shared" / "specs",):
    if candidate.is_dir():
        SPECS = candidate


@cache
def load_specs(pattern: str) -> tuple[OpenAPI, ...]:
    """Every description matching ``pattern`` under the shared specs, security removed."""
    apis = []
    for path in sorted(SPECS.glob(pattern)):
        text = path.read_text()
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        document["servers"] = [{"url": "/"}]
        document.pop("security", None)
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                if isinstance(operation, dict):
                    operation.pop("security", None)
        document.get("components", {}).pop("securitySchemes", None)
        apis.append(OpenAPI.from_dict(document))
    if not apis:
        raise FileNotFoundError(f"no API description matches {SPECS / pattern}")
    return tuple(apis)


class SpecChecker:
    """Validates werkzeug requests and responses against a set of descriptions."""

    def __init__(self, pattern: str):
        self.apis = load_specs(pattern)

    def _unmarshal(self, request: Request) -> tuple[OpenAPI | None, list[Any]]:
        wrapped = WerkzeugOpenAPIRequest(request)
        for api in self.apis:
            errors = api.unmarshal_request(wrapped).errors
            if errors and all(isinstance(e, PathNotFound) for e in errors):
                continue
            return api, list(errors)
        return None, []

    def request_errors(self, request: Request) -> list[str]:
        api, errors = self._unmarshal(request)
        if api is None:
            return [f"{request.method} {request.path} is not in the published description"]
        return [_describe(e) for e in errors]

    def response_errors(self, request: Request, response: Response) -> list[str]:
        api, _ = self._unmarshal(request)
        if api is None:
            return []
        result = api.unmarshal_response(WerkzeugOpenAPIRequest(request),
                                        WerkzeugOpenAPIResponse(response))
        return [_describe(e) for e in result.errors]


def _describe(error: Any) -> str:
    cause = error.__cause__
    details = getattr(cause, "schema_errors", None)
    if details:
        return f"{error}: " + "; ".join(getattr(d, "message", str(d)) for d in details)
    return f"{error}" + (f": {cause}" if cause else "")

"""The API's routes, one module per resource: ``health`` (/healthz, /metrics), ``plans``
(/v1/plans, /v1/validate, /v1/replan), ``nodes`` (/v1/nodes/...), ``observations``
(/v1/nodes/{name}/observations, /v1/observations, /v1/calibration), ``probes`` (/v1/probes,
/v1/topology), ``admin`` (/v1/admin/tokens) and ``demand`` (/v1/workloads/{name}/demand and
/forecast).

Routes are thin: parse, check access, call the store or the plan service, shape the answer.
Errors are raised (``gridplace.api.errors``) and turned into responses in ``app.py``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from gridplace.api.models import ErrorResponse

Responses = dict[int | str, dict[str, Any]]


def errors(*statuses: int) -> Responses:
    """OpenAPI entries for the error answers a route can give (all share ``ErrorResponse``)."""
    descriptions = {
        400: "The body is not parseable JSON.",
        401: "No token, or one nobody issued.",
        403: "A valid token that may not act on this resource.",
        404: "No such resource.",
        409: "The plan was based on a generation that is no longer the latest.",
        413: "The body is over the size limit.",
        422: "The request is invalid; issues name each field at fault.",
        429: "Over the request rate; see Retry-After.",
        503: "The database or the solver cannot answer now.",
    }
    return {
        status: {"model": ErrorResponse, "description": descriptions[status]} for status in statuses
    }


# Every authenticated route can answer these.
AUTH_ERRORS = (401, 403, 422, 429, 503)
# ``openapi_extra`` of a lean route, which reads the bearer token itself (``deps.bearer_token``).
BEARER: dict[str, Any] = {"security": [{"HTTPBearer": []}]}


def json_body_schema(model: type[BaseModel], description: str) -> dict[str, Any]:
    """``openapi_extra`` for a JSON body a lean route validates itself (``bodies.json_body``):
    the model's schema, nested models inlined."""
    schema = model.model_json_schema(by_alias=True)
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    content = {"application/json": {"schema": inline(schema)}}
    return {"requestBody": {"required": True, "description": description, "content": content}}


def raw_body(description: str, array: bool) -> dict[str, Any]:
    """``openapi_extra`` for a body read as text: YAML (one or more documents) or JSON."""
    document = {"type": "object", "description": "A gridplace document (apiVersion, kind, ...)."}
    json_schema: dict[str, Any] = (
        {"anyOf": [document, {"type": "array", "items": document}]} if array else document
    )
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                "application/json": {"schema": json_schema},
                "application/yaml": {"schema": {"type": "string"}},
            },
        }
    }

"""The OpenAPI description's general rules: what every operation answers and takes because of
what it is (it has parameters, names a dataset, reads a version, writes), so routes declare
only what is theirs alone (``responses=`` and ``openapi_extra=`` on the route)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from quarry.server.names import DATASET_NAME_SCHEMA
from quarry.server.responses import ErrorBody
from quarry.store.store import MIN_PREFIX

_ERROR_REF = "#/components/schemas/ErrorBody"
_VALIDATION_REF = "#/components/schemas/HTTPValidationError"
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

# store.resolve: HEAD, an alias, a full id or a unique prefix; a shorter hex prefix is a
# 400. (An alias of fewer than MIN_PREFIX hex letters, e.g. "beef", is legal but falls
# outside this pattern.)
VERSION_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": rf"^(?![0-9A-Fa-f]{{1,{MIN_PREFIX - 1}}}$)",
    "description": f"HEAD (the default), an alias, a version id or a prefix of at least "
                   f"{MIN_PREFIX} hex digits",
}

# Why each status is answered, by cause. A route's own description of a status wins.
INVALID = "Invalid request: a malformed or missing parameter or body"
BAD_NAME = "Invalid request, or an invalid dataset name"
NO_DATASET = "No such dataset (or version)"
CLOSED = "A closed dataset (`--closed`) and no valid token was sent"
WRITE = "Writes need the token (`Authorization: Bearer <token>`)"
AMBIGUOUS = "Ambiguous version prefix; `matches` lists some of the versions"
TOO_LARGE = "The request body is too large"


def describe(schema: dict[str, Any], is_write: Callable[[str, str], bool]) -> dict[str, Any]:
    """Apply the rules to FastAPI's description, in place (idempotent: FastAPI caches the
    description, and each call of ``openapi()`` applies them again)."""
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if method in _METHODS:
                _operation(path, method.upper(), op, is_write)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("ErrorBody", ErrorBody.model_json_schema())
    if _VALIDATION_REF.encode() not in orjson.dumps(schema):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
    return schema


def _operation(path: str, method: str, op: dict[str, Any],
               is_write: Callable[[str, str], bool]) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    _validation_as_400(responses)
    params = {(p["in"], p["name"]): p for p in op.get("parameters", ())}
    for p in params.values():
        _parameter(p)

    errors: dict[int, str] = {}
    if params or "requestBody" in op:
        errors[400] = INVALID
    if ("path", "name") in params:
        errors.update({400: BAD_NAME, 401: CLOSED, 404: NO_DATASET})
    if ("query", "version") in params or (("path", "name") in params and "requestBody" in op):
        errors.update({404: NO_DATASET, 409: AMBIGUOUS})  # (bodies may name a version too)
    if "requestBody" in op:
        errors[413] = TOO_LARGE
    if is_write(method, path):
        errors[401] = WRITE
    for status, why in errors.items():
        responses.setdefault(str(status), _error(why))
    op["responses"] = dict(sorted(responses.items()))


def _validation_as_400(responses: dict[str, Any]) -> None:
    """FastAPI's automatic 422 is the 400 that invalid parameters get here (the validation
    handler in app.py), with the JSON error body."""
    auto = responses.get("422", {}).get("content", {}).get("application/json", {})
    if auto.get("schema", {}).get("$ref") == _VALIDATION_REF:
        del responses["422"]


def _parameter(p: dict[str, Any]) -> None:
    schema = p.get("schema", {})
    # A URL has no null: FastAPI's ``X | None`` (anyOf X, null) is X, not required.
    options = schema.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options and len(options) == 2:
        (inner,) = (o for o in options if o != {"type": "null"})
        extra = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        schema = {**inner, **extra}
    if p["in"] == "path" and p["name"] == "name":
        schema = {**schema, **DATASET_NAME_SCHEMA}
    elif p["in"] == "query" and p["name"] == "version":
        schema = {**schema, **VERSION_SCHEMA}
    p["schema"] = schema


def _error(why: str) -> dict[str, Any]:
    return {"description": why,
            "content": {"application/json": {"schema": {"$ref": _ERROR_REF}}}}

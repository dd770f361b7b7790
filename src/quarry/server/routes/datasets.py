"""Dataset listing and metadata, and the one rule for a 405's ``Allow`` (``allowed``) with
the fallback that answers a path below ``/datasets/`` no route takes. Installed last: its
``/datasets/<name>`` routes must not shadow the routes below a dataset."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Route
from starlette.types import Scope

from quarry.access import AccessPolicy
from quarry.engine import Engine
from quarry.errors import NotFound
from quarry.server import names  # noqa: F401 - registers the {name:dataset} convertor
from quarry.server.middleware import caller_of
from quarry.server.settings import ServeSettings

FALLBACK = "no_route"


def install(api: FastAPI, engine: Engine, settings: ServeSettings) -> None:
    @api.get("/datasets", tags=["datasets"])
    def list_datasets(request: Request) -> list[dict[str, Any]]:
        """Every dataset; closed ones only with the token."""
        policy: AccessPolicy = request.app.state.policy
        caller = caller_of(request)
        return [d for d in engine.datasets() if policy.may_read(caller, d["name"])]

    # {name:dataset}: a path below a dataset (/datasets/x/keys/build) is not a dataset, so
    # it is answered as no route (404) or by the methods its own route takes (405).
    @api.get("/datasets/{name:dataset}", tags=["datasets"])
    def describe_dataset(name: str) -> dict[str, Any]:
        return engine.describe(name)

    # Last of all, a GET below /datasets/ that no route took: the 405 of a path whose routes
    # take other methods (GET /datasets/x/query), else a 404 (/datasets/x/lines/1/x, not
    # Starlette's redirect to a slash variant). Never named in an Allow (see allowed).
    @api.get("/datasets/{path:path}", include_in_schema=False, name=FALLBACK)
    def no_route(path: str, request: Request) -> None:
        if allowed(api.routes, request.scope, None):
            raise HTTPException(405)
        raise NotFound(f"no route for /datasets/{path}")


def allowed(routes: Iterable[BaseRoute], scope: Scope, given: str | None) -> str:
    """A 405's ``Allow``: every method some route takes at this path ("" if none). Starlette
    names only the first route that matched the path (GET and POST of one path are separate
    routes here), and the GET routes take HEAD too (see ObservedApp)."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    if getattr(scope.get("route"), "name", None) == FALLBACK:
        given = None  # Starlette's 405 of the fallback itself (a POST it partly matched)
    methods = {m.strip() for m in (given or "").split(",") if m.strip()}
    for route in routes:
        if (isinstance(route, Route) and route.methods and route.name != FALLBACK
                and route.path_regex.match(path)):
            methods |= route.methods
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))

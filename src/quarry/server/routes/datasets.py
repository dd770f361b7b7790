"""Dataset listing and metadata. Installed last: its catch-all
``/datasets/<name>`` must not shadow the routes below a dataset."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from quarry.access import AccessPolicy
from quarry.engine import Engine
from quarry.errors import NotFound
from quarry.server.middleware import caller_of
from quarry.server.settings import ServeSettings
from quarry.store.refs import RESERVED_SEGMENTS


def install(api: FastAPI, engine: Engine, settings: ServeSettings) -> None:
    @api.get("/datasets", tags=["datasets"])
    def list_datasets(request: Request) -> list[dict[str, Any]]:
        """Every dataset; closed ones only with the token."""
        policy: AccessPolicy = request.app.state.policy
        caller = caller_of(request)
        return [d for d in engine.datasets() if policy.may_read(caller, d["name"])]

    @api.get("/datasets/{name:path}", tags=["datasets"])
    def describe_dataset(name: str) -> dict[str, Any]:
        if any(seg in RESERVED_SEGMENTS for seg in name.split("/")):
            # /datasets/x/<something this server has no route for>
            raise NotFound(f"no route for /datasets/{name}")
        return engine.describe(name)

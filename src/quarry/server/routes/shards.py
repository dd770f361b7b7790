"""Shards over HTTP: their state, memory and load; waking and sleeping them; and the endpoint
through which another Quarry's dispatcher runs its part of a query here (dispatchers nest).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from quarry.access import AccessPolicy
from quarry.cluster import wire
from quarry.cluster.backends import BackendSpec, make_backend
from quarry.cluster.dispatcher import Dispatcher, Policy
from quarry.cluster.ops import Task
from quarry.engine import Engine
from quarry.errors import BadRequest, PayloadTooLarge, Unauthorized
from quarry.server.middleware import WRITES, caller_of
from quarry.server.names import DATASET_NAME_SCHEMA
from quarry.server.responses import error_responses
from quarry.server.settings import ServeSettings

MAX_TASK = 8 << 20


def make_dispatcher(engine: Engine, settings: ServeSettings) -> Dispatcher:
    spec = BackendSpec.choose(workers=settings.shard_workers, ray=settings.ray,
                              ray_address=settings.ray_address, remote=settings.remote,
                              replicas=settings.replicas, timeout_s=settings.shard_timeout)
    backend = make_backend(spec, engine, settings.shards, token=settings.token)
    policy = Policy(on_error=settings.on_shard_error,  # type: ignore[arg-type]
                    timeout_s=settings.shard_timeout)
    return Dispatcher(engine, backend, shards=settings.shards, policy=policy,
                      memory_budget=settings.memory_budget)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def install(api: FastAPI, engine: Engine, settings: ServeSettings) -> None:
    dispatcher: Dispatcher = api.state.dispatcher
    policy: AccessPolicy = api.state.policy

    @api.get("/shards", tags=["shards"],
             summary="Shards laid out so far: state (awake/asleep), memory and load",
             responses=error_responses({401: "The dataset is closed and no valid token was sent"}))
    async def shards(request: Request,
                     dataset: str | None = Query(None, json_schema_extra=DATASET_NAME_SCHEMA),
                     version: str | None = None) -> Response:
        if version is not None and dataset is None:
            raise BadRequest("version needs dataset")  # (it would be ignored)
        caller = caller_of(request)
        why = None if dataset is None else policy.read_denied(caller, dataset)
        if why is not None:
            raise Unauthorized(why)
        if dataset is not None:
            # Lay the dataset out now, so its shards are listed before any query.
            await run_in_threadpool(dispatcher.layout_of, dataset, version)
        status = dispatcher.status()
        if dataset is not None:
            status["shards"] = [s for s in status["shards"] if s["dataset"] == dataset]
        else:
            status["shards"] = [s for s in status["shards"]
                                if policy.may_read(caller, s["dataset"])]
        if policy.hidden(caller):
            # The total of what this caller may see: closed shards' memory is theirs.
            status["memory_bytes"] = sum(s["memory_bytes"] for s in status["shards"])
        return _json(status)

    @api.post("/shards/map", tags=["shards"],
              summary="Run a shard task here (another dispatcher's part of a query)",
             responses=error_responses({401: "The task's dataset is closed: send the token"}),
             openapi_extra={"requestBody": {"required": True, "content": {
                 wire.MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}}})
    async def shard_map(request: Request) -> Response:
        raw = await request.body()
        if len(raw) > MAX_TASK:
            raise PayloadTooLarge(f"a shard task is at most {MAX_TASK} bytes")
        task = wire.unpack(raw)
        if not isinstance(task, Task):
            raise BadRequest("the body must be a shard task")
        # The dataset is in the body, out of the middleware's sight: asked here.
        why = policy.read_denied(caller_of(request), task.dataset)
        if why is not None:
            raise Unauthorized(why)

        def run() -> bytes:
            view = engine.records(task.dataset, task.version)
            g = dispatcher.gather(view, task.query, task.chunks)
            return wire.pack({"partial": g.partial, "missing": list(g.missing)})

        body = await run_in_threadpool(run)
        return Response(body, media_type=wire.MEDIA_TYPE)

    @api.post("/shards/{shard:path}/wake", tags=["shards"], openapi_extra=WRITES,
              summary="Wake a shard: map its indexes into memory (others may fall asleep)",
              responses=error_responses({404: "No such shard"}))
    async def wake(shard: str) -> Response:
        return _json(await run_in_threadpool(dispatcher.wake, shard))

    @api.post("/shards/{shard:path}/sleep", tags=["shards"], openapi_extra=WRITES,
              summary="Put a shard to sleep: it answers by scanning until woken",
              responses=error_responses({404: "No such shard"}))
    async def sleep(shard: str) -> Response:
        return _json(await run_in_threadpool(dispatcher.sleep, shard))


"""Whole versions of any kind: PUT a new version, GET its data at any version, history, aliases.

Installed before ``datasets``: the catch-all ``/datasets/{name}`` would shadow these.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, StreamingResponse

from quarry.datasets.kinds import VersionWriter, WriteOptions
from quarry.engine import Engine
from quarry.errors import BadRequest, NotFound, PreconditionFailed
from quarry.index.line_index import choose_mode
from quarry.server import answers, names, puts  # names registers {name:dataset}
from quarry.server.puts import INLINE_BELOW, MAX_MESSAGE
from quarry.server.responses import error_responses
from quarry.server.settings import ServeSettings
from quarry.store.refs import check_dataset_name
from quarry.versions import version_json

HANDOFF = 4 << 20
DELETED_BODY = {"type": "object", "required": ["dataset", "deleted", "version", "aliases"],
                "properties": {
                    "dataset": {"type": "string"}, "deleted": {"type": "boolean"},
                    "version": {"type": "string", "description": "The HEAD it had"},
                    "aliases": {"type": "object", "additionalProperties": {"type": "string"},
                                "description": "The aliases it had"}}}
# PUT .../aliases/<alias>'s body, when no ?version= is given (none at all: HEAD).
ALIAS_BODY = {"type": "object", "required": ["version"],
              "properties": {"version": {"type": "string",
                                         "description": "The version the alias points at"}}}


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=headers)


def _content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not raw.isdigit():
        raise BadRequest(f"invalid Content-Length {raw[:40]!r}")
    return int(raw)


async def _receive(request: Request, writer: VersionWriter) -> None:
    """Feed the body to the writer. Small bodies are written inline; past ``HANDOFF`` bytes,
    batches are hashed and written in a worker thread while the event loop receives the
    next batch (hashing and writing release the GIL), so a big PUT uses two cores."""
    batch: list[bytes] = []
    size = 0
    pending: asyncio.Future[None] | None = None
    try:
        async for block in request.stream():
            if not block:
                continue
            batch.append(block)
            size += len(block)
            if size >= HANDOFF:
                data = b"".join(batch)
                batch.clear()
                size = 0
                if pending is not None:
                    await pending
                pending = asyncio.get_running_loop().run_in_executor(None, writer.write, data)
    except BaseException:
        if pending is not None:
            await asyncio.wait([pending])  # the thread must be done before the writer aborts
        raise
    if pending is not None:
        await pending
    for block in batch:
        writer.write(block)


def _expected_parent(engine: Engine, name: str, raw: str) -> str:
    """The version an ``If-Match`` header names (an ETag, id, unique prefix or alias)."""
    value = raw.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    head = engine.store.head(name)
    if value == "*":
        if head is None:
            raise PreconditionFailed(f"If-Match: * but {name} does not exist", current=None)
        return head
    if head is None:
        raise PreconditionFailed(f"{name} does not exist, so it is not at {value[:12]}",
                                 current=None)
    try:
        return engine.store.resolve(name, value)
    except NotFound:
        raise PreconditionFailed(f"{name} has no version {value[:40]!r}; HEAD is {head[:12]}",
                                 current=head) from None


def install(api: FastAPI, engine: Engine, settings: ServeSettings) -> None:
    store = engine.store

    @api.get("/datasets/{name:path}/versions", tags=["versions"],
             summary="History: id, parent, time, size, message, lineage, newest first")
    def versions(name: str, limit: int = Query(1000, ge=1, le=1_000_000)) -> Response:
        store.require_head(name)
        hist = store.history(name, limit)
        by_version: dict[str, list[str]] = {}
        aliases = store.refs.aliases(name)
        for alias, target in aliases.items():
            by_version.setdefault(target, []).append(alias)
        return _json({"dataset": name, "head": hist[0][0], "aliases": aliases,
                      "versions": [version_json(v, s, by_version.get(v, [])) for v, s in hist]})

    @api.get("/datasets/{name:path}/aliases", tags=["versions"])
    def list_aliases(name: str) -> Response:
        return _json(store.aliases(name))

    @api.put("/datasets/{name:path}/aliases/{alias}", tags=["versions"],
             summary="Point an alias at a version (HEAD if none given); moves atomically",
             openapi_extra={"requestBody": {"required": False, "content": {
                 "application/json": {"schema": ALIAS_BODY}}}})
    async def put_alias(name: str, request: Request, alias: str = Path(
                            json_schema_extra=names.ALIAS_SCHEMA),
                        version: str | None = None) -> Response:
        body = await request.body()
        if body.strip():  # checked even beside ?version=, which wins
            try:
                doc = orjson.loads(body)
                named = doc["version"] if isinstance(doc, dict) else None
            except (orjson.JSONDecodeError, KeyError):
                named = None
            if not isinstance(named, str):
                raise BadRequest('alias body must be JSON like {"version": "<id>"}')
            version = named if version is None else version
        previous = store.refs.get(name, alias) if store.head(name) else None
        target = store.set_alias(name, alias, version)
        return _json({"dataset": name, "alias": alias, "version": target,
                      "previous": previous})

    @api.delete("/datasets/{name:path}/aliases/{alias}", tags=["versions"],
                responses=error_responses({404: "No such dataset, or no such alias"}))
    def delete_alias(name: str,
                     alias: str = Path(json_schema_extra=names.ALIAS_SCHEMA)) -> Response:
        store.require_head(name)
        previous = store.delete_alias(name, alias)
        return _json({"dataset": name, "alias": alias, "version": None, "previous": previous})

    @api.get("/datasets/{name:path}/data", tags=["versions"], response_class=Response,
             summary="The data of a version: HEAD, an id, a unique prefix or an alias",
             responses={200: {"description": "The data, with the media type it was PUT with "
                                              "(lines: text/plain)",
                              "content": {"*/*": {"schema": {}}},
                              "headers": {k: {"description": v, "schema": {"type": "string"}}
                                          for k, v in answers.CONDITIONAL_HEADERS.items()}},
                        **answers.NOT_MODIFIED,
                        **error_responses({400: "A records dataset (not readable whole), "
                                                "or a bad parameter",
                                           503: "The data is missing from the store"})})
    async def get_data(request: Request, name: str, version: str | None = None) -> Response:
        # answers.data_version: what the hot path answers too (hotpath.py), declared once.
        found = answers.data_version(engine, name, version, answers.if_none_match(request))
        if found.not_modified is not None:
            return found.not_modified.response()
        data, media = found.data, found.media_type.decode("latin-1")
        headers = found.header_dict()
        if data.path is not None:
            if found.snap.size < INLINE_BELOW:
                return found.answer(data.path.read_bytes()).response()
            return FileResponse(data.path, media_type=media, headers=headers)
        return StreamingResponse(data.iter_bytes(), media_type=media, headers=headers)

    @api.delete("/datasets/{name:dataset}", tags=["versions"],
                summary="Remove a dataset: HEAD and aliases at once; its versions and blobs "
                        "stay until gc",
                responses={200: {"description": "Removed", "content": {"application/json": {
                    "schema": DELETED_BODY}}},
                           **error_responses({404: "No such dataset"})})
    def delete_dataset(name: str) -> Response:
        event = store.delete_dataset(name)
        return _json({"dataset": name, "deleted": True, "version": event.parent,
                      "aliases": dict(event.extra.get("aliases", {}))})

    # {name:dataset}: not a path below a dataset, so PUT /datasets/x/lines/3 is the 405 of a
    # read-only route, not a PUT of a dataset named "x/lines/3".
    @api.put("/datasets/{name:dataset}", tags=["versions"], status_code=201,
             summary="PUT the body as a new version (201), or 200 if it equals HEAD",
             responses={200: {"description": "The body equals HEAD: nothing new committed",
                              "content": {"application/json": {"schema": {}}}},
                        201: {"description": "A new version"},
                        **error_responses({
                            409: "A version of another kind than the dataset's",
                            412: "`If-Match` names a version that is not HEAD",
                            507: "The disk filled up; nothing was committed"})},
             openapi_extra={"requestBody": {"required": False, "content": {
                 "*/*": {"schema": {"description": "The version's data"}}}}})
    async def put_dataset(
        name: str, request: Request,
        kind: str | None = Query(None, description="lines or document (default: the "
                                 "dataset's kind, else document)",
                                 json_schema_extra={"enum": ["lines", "document"]}),
        message: str = Query("", max_length=MAX_MESSAGE),
        index: str = Query("auto", description="lines: line index mode",
                           json_schema_extra={"enum": ["auto", "dense", "sparse"]}),
    ) -> Response:
        check_dataset_name(name)
        choose_mode(index, None)  # a 400 for any kind, as the description's enum says
        message = message or request.headers.get("x-quarry-message", "")[:MAX_MESSAGE]
        if_match = request.headers.get("if-match")
        commit_kw: dict[str, Any] = {}
        if if_match is not None:
            commit_kw["expected_parent"] = _expected_parent(engine, name, if_match)
        opts = WriteOptions(message=message, size_hint=_content_length(request),
                            content_type=request.headers.get("content-type"),
                            params={"index": index})
        with puts.storage_errors(name):
            writer = puts.open_writer(store, name, kind, opts)
            try:
                await _receive(request, writer)
            except BaseException:
                writer.abort()
                raise
            if puts.commits_inline(store, opts.size_hint):
                res = writer.commit(**commit_kw)  # a few small writes and a quick sync
            else:
                # Slow fsyncs and big finishes wait in a worker thread, not on the event loop.
                res = await run_in_threadpool(lambda: writer.commit(**commit_kw))
        status, body, headers = puts.reply(name, res)
        if res.created:
            request.app.state.metrics.ingested.labels(name).inc(res.snapshot.size)
        return _json(body, status, headers)

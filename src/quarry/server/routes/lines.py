"""Line reads: /lines/<n>, /datasets/<name>/lines/<n>, /datasets/<name>/lines?start=&count=."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI, Query
from fastapi.responses import Response, StreamingResponse

from quarry.datasets.lines import parse_line_number
from quarry.engine import Engine
from quarry.errors import NotFound
from quarry.server.settings import ServeSettings

TEXT_TYPE = "text/plain; charset=utf-8"


def _stream_line(line: bytes, piece: int = 1 << 20) -> Iterator[bytes]:
    for i in range(0, len(line), piece):
        yield line[i : i + piece]


def install(api: FastAPI, engine: Engine, settings: ServeSettings) -> None:
    base = settings.index_base

    def line_response(dataset: str | None, n: str, version: str | None) -> Response:
        if dataset is None:
            raise NotFound("no default dataset: serve a file, or name one with --default, "
                           "or use /datasets/<name>/lines/<n>")
        i = parse_line_number(n, base)
        line = engine.lines(dataset, version).line(i)
        if len(line) > (1 << 20):
            return StreamingResponse(_stream_line(line), media_type=TEXT_TYPE)
        return Response(line, media_type=TEXT_TYPE)

    @api.get("/lines/{n}", tags=["lines"], response_class=Response,
             summary="Line n of the default dataset (text/plain, no line ending)")
    def default_line(n: str, version: str | None = None) -> Response:
        return line_response(settings.default_dataset, n, version)

    @api.get("/datasets/{name:path}/lines/{n}", tags=["lines"], response_class=Response,
             summary="Line n of a dataset (text/plain, no line ending)")
    def dataset_line(name: str, n: str, version: str | None = None) -> Response:
        return line_response(name, n, version)

    @api.get("/datasets/{name:path}/lines", tags=["lines"], response_class=Response,
             summary="A range of lines, streamed as newline-terminated text")
    def dataset_lines(
        name: str,
        start: str = Query(..., description=f"first line ({base}-based)"),
        count: int = Query(100, ge=1, le=settings.max_range_count),
        version: str | None = None,
    ) -> Response:
        i = parse_line_number(start, base)
        view = engine.lines(name, version)
        if i >= view.lines:
            view.line(i)  # raises OutOfRange with the line count
        view.check()
        headers = {"x-quarry-version": view.version,
                   "x-quarry-lines": str(min(count, view.lines - i))}
        return StreamingResponse(view.index.iter_text(i, count), media_type=TEXT_TYPE,
                                 headers=headers)

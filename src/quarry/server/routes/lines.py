"""Line reads: /lines/<n>, /datasets/<name>/lines/<n>, /datasets/<name>/lines?start=&count=."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from quarry.datasets.lines import parse_line_number
from quarry.engine import Engine
from quarry.server import answers
from quarry.server.answers import if_none_match
from quarry.server.names import line_number_schema
from quarry.server.responses import error_responses
from quarry.server.settings import ServeSettings

TEXT_TYPE = "text/plain; charset=utf-8"
# What the line routes answer, for the OpenAPI description (the hot path answers the same).
# Validation failures are 400s too (see app.py), never FastAPI's 422.
_ERRORS = {
    400: "A line number that is not a positive integer (or ≥ 2^63), or a bad parameter",
    401: "The dataset is closed (`--closed`) and no valid token was sent",
    404: "Unknown dataset or version",
    409: "Ambiguous version prefix",
    413: "Line number past the end; `lines` gives the number of lines",
    503: "A linked file changed or vanished since it was indexed",
}
# /lines/<n> reads the default dataset, which is not named in the path (but closed all the
# same when it is closed).
_DEFAULT_ERRORS = {**_ERRORS, 404: "No default dataset, or unknown version"}


def _responses(text: str, errors: dict[int, str], headers: dict[str, str] | None = None,
               conditional: bool = False) -> dict[int | str, dict[str, Any]]:
    ok: dict[str, Any] = {"description": text,
                          "content": {"text/plain": {"schema": {"type": "string"}}}}
    if conditional:
        headers = {**answers.CONDITIONAL_HEADERS, **(headers or {})}
    if headers:
        ok["headers"] = {k: {"description": v, "schema": {"type": "string"}}
                         for k, v in headers.items()}
    return {200: ok, **(answers.NOT_MODIFIED if conditional else {}), **error_responses(errors)}


def _stream_line(line: bytes, piece: int = 1 << 20) -> Iterator[bytes]:
    for i in range(0, len(line), piece):
        yield line[i : i + piece]


def install(api: FastAPI, engine: Engine, settings: ServeSettings) -> None:
    base = settings.index_base
    # Checked by parse_line_number (as the hot path does), so the same 400s; the schema is
    # only the description's.
    line_number = Path(json_schema_extra=line_number_schema(base))

    def line_response(request: Request, dataset: str | None, n: str,
                      version: str | None) -> Response:
        # answers.line: the very answer the hot path gives (hotpath.py), declared once.
        answer = answers.line(engine, dataset, n, version, base, if_none_match(request))
        if len(answer.body) > (1 << 20):
            return StreamingResponse(_stream_line(answer.body), media_type=TEXT_TYPE,
                                     headers=answer.header_dict())
        return answer.response()

    @api.get("/lines/{n}", tags=["lines"], response_class=Response,
             summary="Line n of the default dataset (text/plain, no line ending)",
             responses=_responses("The line, without its line ending (UTF-8)",
                                  _DEFAULT_ERRORS, conditional=True))
    def default_line(request: Request, n: str = line_number,
                     version: str | None = None) -> Response:
        return line_response(request, settings.default_dataset, n, version)

    @api.get("/datasets/{name:path}/lines/{n}", tags=["lines"], response_class=Response,
             summary="Line n of a dataset (text/plain, no line ending)",
             responses=_responses("The line, without its line ending (UTF-8)", _ERRORS,
                                  conditional=True))
    def dataset_line(request: Request, name: str, n: str = line_number,
                     version: str | None = None) -> Response:
        return line_response(request, name, n, version)

    @api.get("/datasets/{name:path}/lines", tags=["lines"], response_class=Response,
             summary="A range of lines, streamed as newline-terminated text",
             responses=_responses(
                 "The lines, each ending with a newline (UTF-8)", _ERRORS,
                 {"x-quarry-version": "The version read",
                  "x-quarry-lines": "How many lines the body holds"}))
    def dataset_lines(
        name: str,
        start: str = Query(..., description=f"first line ({base}-based)",
                           json_schema_extra=line_number_schema(base)),
        count: int = Query(100, ge=1, le=settings.max_range_count),
        version: str | None = None,
    ) -> Response:
        i = parse_line_number(start, base)
        view = engine.lines(name, version)
        if i >= view.lines:
            view.line(i, base)  # raises OutOfRange with the line count
        view.check()
        headers = {"x-quarry-version": view.version,
                   "x-quarry-lines": str(min(count, view.lines - i))}
        return StreamingResponse(view.index.iter_text(i, count), media_type=TEXT_TYPE,
                                 headers=headers)

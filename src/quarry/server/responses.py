"""Response bytes shared by the hot path and the ASGI app, so both answer identically, and
the shape of error answers for the OpenAPI description."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from quarry.errors import QuarryError

TEXT = b"text/plain; charset=utf-8"
JSON = b"application/json"


def error_body(err: QuarryError) -> bytes:
    return orjson.dumps(err.to_json())


def reason(status: int) -> bytes:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


STATUS_LINES = {s: b"HTTP/1.1 %d %s\r\n" % (s, reason(s)) for s in range(100, 600)}


def raw_response(status: int, content_type: bytes, body: bytes, extra: bytes = b"") -> bytes:
    """A complete HTTP/1.1 response; used by the hot path only. ``extra``: more header lines,
    each ending with CRLF."""
    return b"%scontent-type: %s\r\n%scontent-length: %d\r\n\r\n%s" % (
        STATUS_LINES[status], content_type, extra, len(body), body)


class ErrorBody(BaseModel):
    """An error answer: its kind and what went wrong (some errors add fields)."""

    # The OpenAPI form of error_body's output. Some errors carry more fields (a 413 past the
    # end gives "lines", the line count).
    model_config = ConfigDict(extra="allow")

    error: str
    detail: str


def ok_response(why: str, *media_types: str, status: int = 200
                ) -> dict[int | str, dict[str, Any]]:
    """A FastAPI ``responses=`` entry: a success answered in any of ``media_types``."""
    return {status: {"description": why, "content": {m: {"schema": {}} for m in media_types}}}


def error_responses(statuses: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses=`` entries for error answers: ``{status: why}``, each a JSON
    ``ErrorBody``."""
    return {status: {"model": ErrorBody, "description": why} for status, why in statuses.items()}

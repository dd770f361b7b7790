"""Response bytes shared by the hot path and the ASGI app, so both answer identically."""

from __future__ import annotations

import orjson

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


_STATUS_LINES = {s: b"HTTP/1.1 %d %s\r\n" % (s, reason(s)) for s in range(100, 600)}


def raw_response(status: int, content_type: bytes, body: bytes, extra: bytes = b"") -> bytes:
    """A complete HTTP/1.1 response; used by the hot path only. ``extra``: more header lines,
    each ending with CRLF."""
    return b"%scontent-type: %s\r\n%scontent-length: %d\r\n\r\n%s" % (
        _STATUS_LINES[status], content_type, extra, len(body), body)

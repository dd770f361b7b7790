"""The line and data routes' answers, declared once: status, media type, body and headers of
``GET /lines/<n>``, ``/datasets/<name>/lines/<n>`` and ``/datasets/<name>/data``, which the
protocol's hot path writes as raw bytes and the ASGI routes as a Response, so the two
cannot drift. Also the conditional-GET rules both follow.

Every version-addressed answer carries an ETag (the version id) and answers a matching
``If-None-Match`` with a 304. It may be cached for good when the URL names the full version
id (that URL's answer never changes); reached through HEAD, an alias or a prefix, the
name can move, so caches must revalidate (``no-cache``, with the ETag to do it cheaply).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from fastapi import Request
from fastapi.responses import Response

from quarry.datasets.kinds import Data
from quarry.datasets.lines import parse_line_number
from quarry.engine import Engine
from quarry.errors import NotFound
from quarry.server.responses import STATUS_LINES, TEXT
from quarry.store import Snapshot

IMMUTABLE = b"public, max-age=31536000, immutable"
# For the OpenAPI description of the routes that answer so.
CONDITIONAL_HEADERS = {
    "etag": "The version id, quoted: send it back in If-None-Match to get a 304 while the "
            "answer is unchanged",
    "cache-control": "`public, max-age=31536000, immutable` when the URL names the full "
                     "version id; `no-cache` (revalidate) through HEAD, an alias or a prefix",
}
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified: If-None-Match names this version (no body)"}}
NO_CACHE = b"no-cache"
NO_DEFAULT = ("no default dataset: serve a file, or name one with --default, or use "
              "/datasets/<name>/lines/<n>")
MAX_CACHED = 4096


class Headers(NamedTuple):
    """Header fields, and the same as HTTP/1.1 lines (made once: the hot path sends them as
    they are)."""

    pairs: tuple[tuple[bytes, bytes], ...]
    lines: bytes

    @classmethod
    def of(cls, *pairs: tuple[bytes, bytes]) -> Headers:
        return cls(pairs, b"".join([b"%s: %s\r\n" % p for p in pairs]))


NO_HEADERS = Headers((), b"")


class Answer(NamedTuple):
    """A complete answer. ``media_type`` None: a 304, which has no body nor its headers."""

    status: int
    media_type: bytes | None
    body: bytes
    headers: Headers = NO_HEADERS

    def raw(self, date: bytes, request_id: bytes) -> bytes:
        """As HTTP/1.1 bytes, with a ``date`` header line and this ``x-request-id``."""
        # (One format, not raw_response's: this is most of the hot path's own work.)
        if self.media_type is None:
            return b"%s%s%sx-request-id: %s\r\n\r\n" % (
                STATUS_LINES[self.status], self.headers.lines, date, request_id)
        return b"%scontent-type: %s\r\n%s%sx-request-id: %s\r\ncontent-length: %d\r\n\r\n%s" % (
            STATUS_LINES[self.status], self.media_type, self.headers.lines, date, request_id,
            len(self.body), self.body)

    def header_dict(self) -> dict[str, str]:
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in self.headers.pairs}

    def response(self) -> Response:
        headers = self.header_dict()
        if self.media_type is None:  # Starlette sends no content-length or -type for a 304
            return Response(status_code=self.status, headers=headers)
        return Response(self.body, self.status, headers, self.media_type.decode("latin-1"))


# Validators made so far, by version id: revalidated (HEAD, alias, prefix) or immutable (the
# full id). A hot route sends the same few again and again; cleared when too many.
_validators: tuple[dict[str, Headers], dict[str, Headers]] = ({}, {})


def validators(vid: str, version: str | None) -> Headers:
    """ETag and Cache-Control of an answer that version ``vid`` makes, asked for as
    ``version`` (None: HEAD)."""
    immutable = version == vid
    cache = _validators[immutable]
    found = cache.get(vid)
    if found is None:
        if len(cache) >= MAX_CACHED:
            cache.clear()
        found = cache[vid] = Headers.of((b"etag", b'"%s"' % vid.encode()),
                                        (b"cache-control", IMMUTABLE if immutable else NO_CACHE))
    return found


def matches(if_none_match: str | None, etag: bytes) -> bool:
    """Whether an ``If-None-Match`` value names ``etag`` (RFC 9110 13.1.2: ``*``, or a list
    of entity tags compared weakly, so ``W/"x"`` matches ``"x"``)."""
    if if_none_match is None:
        return False
    tag = etag.decode("latin-1")
    for item in if_none_match.split(","):
        item = item.strip()
        if item == "*" or item.removeprefix("W/") == tag:
            return True
    return False


def if_none_match(request: Request) -> str | None:
    """A request's ``If-None-Match``: all of them, joined (a list header may be split over
    several lines), as the hot path reads it."""
    values = request.headers.getlist("if-none-match")
    return ", ".join(values) if values else None


def _not_modified(headers: Headers, if_none_match: str | None) -> Answer | None:
    if if_none_match is not None and matches(if_none_match, headers.pairs[0][1]):
        return Answer(304, None, b"", headers)
    return None


def line(engine: Engine, dataset: str | None, n: str, version: str | None, base: int,
         if_none_match: str | None = None) -> Answer:
    """Line ``n`` (``base``-numbered) of a dataset; raises QuarryError for the error
    answers (the same 4xx body on both sides)."""
    if dataset is None:
        raise NotFound(NO_DEFAULT)
    if len(n) < 19 and n.isascii() and n.isdigit() and (k := int(n)) >= base:
        i = k - base  # the usual case, without parse_line_number's checks
    else:
        i = parse_line_number(n, base)  # the checks and their error messages
    view = engine.head_lines(dataset) if version is None else engine.lines(dataset, version)
    text = view.line(i, base)
    headers = validators(view.version, version)
    if if_none_match is not None:
        return _not_modified(headers, if_none_match) or Answer(200, TEXT, text, headers)
    return Answer(200, TEXT, text, headers)


class DataVersion(NamedTuple):
    """What ``/datasets/<name>/data`` answers, but its body (which each side reads its own
    way: the hot path from memory, the ASGI route from a file or a stream)."""

    vid: str
    snap: Snapshot
    data: Data
    media_type: bytes
    headers: Headers
    not_modified: Answer | None  # the 304, when If-None-Match names this version

    def answer(self, body: bytes) -> Answer:
        return Answer(200, self.media_type, body, self.headers)

    def header_dict(self) -> dict[str, str]:
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in self.headers.pairs}


def data_headers(vid: str, version: str | None) -> Headers:
    return Headers.of(*validators(vid, version).pairs, (b"x-quarry-version", vid.encode()))


def media_type(data: Data) -> bytes:
    media = data.media_type
    if media.startswith("text/") and "charset" not in media:
        media += "; charset=utf-8"  # as Starlette does
    return media.encode("latin-1")


def data_version(engine: Engine, dataset: str, version: str | None,
                 if_none_match: str | None = None) -> DataVersion:
    vid, snap, data = engine.data(dataset, version)
    headers = data_headers(vid, version)
    not_modified = _not_modified(headers, if_none_match)
    return DataVersion(vid, snap, data, media_type(data), headers, not_modified)

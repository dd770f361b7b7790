"""Who may see and change what: the one access policy that every surface asks.

The HTTP app and its hot path, the shard routes, metrics, event streams and the ZeroMQ
endpoint each hold this object and never test names or tokens themselves, so a rule (what
"closed" covers, how a token is compared, when writes need one) is decided in one place.
It knows nothing of HTTP or ZeroMQ: an HTTP surface hands it the ``Authorization`` header
value it received, as bytes or text; the ZeroMQ endpoints ask for a CURVE client (TRUSTED)
or a plain one (ANONYMOUS).
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

WRITE_METHODS = frozenset({"PUT", "PATCH", "DELETE"})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True  # (an empty host listens on every address: not loopback)
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def closing_name(name: str, closed: frozenset[str]) -> str | None:
    """The closed name that closes ``name`` (a dataset, or a dataset path with a route after
    it): itself, or a name it is under (a path /datasets/a/b/... cannot tell dataset "a/b"
    from "a" and a sub-route, so "a" closes both); None when nothing closes it."""
    if name in closed:
        return name
    for c in closed:
        if name.startswith(c + "/"):
            return c
    return None


def _as_bytes(credential: bytes | str | None) -> bytes:
    if credential is None:
        return b""
    if isinstance(credential, bytes):
        return credential
    # Header values arrive as latin-1 text from ASGI frameworks: this gives the raw bytes
    # back. Anything beyond latin-1 cannot be a header byte, and cannot match a token.
    return credential.encode("latin-1", "replace")


@dataclass(frozen=True)
class Caller:
    """Who is asking, as far as access goes: whether they proved they hold the token."""

    authorized: bool


ANONYMOUS = Caller(authorized=False)
# A client that proved itself another way: a ZeroMQ CURVE client the server's key list let in.
TRUSTED = Caller(authorized=True)


class AccessPolicy:
    """Writes need the token when one is set, and always when the server listens beyond
    loopback; closed datasets (and every dataset under a closed name) need it for reads, and
    are invisible without it: not listed, not counted, not named in metrics or events."""

    def __init__(self, token: str | None, host: str, closed: Iterable[str] = (),
                 write_posts: Iterable[str | re.Pattern[str]] = (),
                 implicit: Callable[[str], str | None] | None = None) -> None:
        self.token = token or None
        self._token = self.token.encode() if self.token is not None else None
        self.public = not is_loopback(host)
        self.closed = frozenset(closed)
        # POST routes that change data or server state (most POSTs are queries, which are
        # reads), as regular expressions matched against the whole path.
        self.write_posts = tuple(re.compile(p) if isinstance(p, str) else p
                                 for p in write_posts)
        # The dataset a path outside /datasets/ reads (/lines/<n>: the default one), so a
        # closed dataset is closed under every name it is served by.
        self.implicit = implicit

    # -- who is asking -------------------------------------------------------------------

    def caller(self, authorization: bytes | str | None) -> Caller:
        """The caller behind an ``Authorization`` header value (``Bearer <token>``)."""
        raw = _as_bytes(authorization).strip()
        # The scheme is case-insensitive (RFC 9110 11.1).
        if self._token is None or raw[:7].lower() != b"bearer ":
            return ANONYMOUS
        # Compared as bytes: a str compare_digest raises on non-ASCII text (a 500 before).
        return Caller(hmac.compare_digest(raw[7:].strip(), self._token))

    # -- reads ---------------------------------------------------------------------------

    def closing(self, name: str) -> str | None:
        """The closed name that closes dataset ``name``, whoever asks; None if it is open."""
        return closing_name(name, self.closed) if self.closed else None

    def may_read(self, caller: Caller, name: str) -> bool:
        return caller.authorized or self.closing(name) is None

    def read_denied(self, caller: Caller, name: str, *, named: bool = True) -> str | None:
        """Why ``caller`` may not read dataset ``name``; None when it may. ``named``: the
        caller named the dataset (else the answer must not name it: /lines/<n> reads the
        default dataset, which the caller may not know)."""
        closed = None if caller.authorized else self.closing(name)
        if closed is None:
            return None
        what = f"dataset {closed}" if named else "the dataset this path reads"
        if self.token is None:
            return f"{what} is closed and this server has no token"
        return f"{what} is closed: send 'Authorization: Bearer <token>'"

    def hidden(self, caller: Caller) -> frozenset[str]:
        """The closed names ``caller`` may not see (every one without the token)."""
        return frozenset() if caller.authorized else self.closed

    def visible(self, caller: Caller, names: Iterable[str]) -> list[str]:
        return [n for n in names if self.may_read(caller, n)]

    def may_see_event(self, caller: Caller, dataset: str, extra: Mapping[str, Any]) -> bool:
        """An event is seen only by callers who may read every dataset it names: a
        pipeline's failure names its source (and carries the transform's stderr, made from
        the source's data)."""
        source = extra.get("source")
        return self.may_read(caller, dataset) and (
            not isinstance(source, str) or self.may_read(caller, source))

    # -- writes --------------------------------------------------------------------------

    def write_denied(self, caller: Caller) -> str | None:
        """Why ``caller`` may not change data or server state; None when it may."""
        if caller.authorized:
            return None
        if self.token is None:
            if not self.public:
                return None
            return ("writes are refused: this server listens beyond loopback and has no "
                    "token; start it with --token or QUARRY_TOKEN")
        return "writes need a token: send 'Authorization: Bearer <token>'"

    def is_write(self, method: str, path: str) -> bool:
        return method in WRITE_METHODS or (
            method == "POST" and any(p.fullmatch(path) for p in self.write_posts))

    # -- HTTP paths ------------------------------------------------------------------------

    def dataset_of(self, path: str) -> str | None:
        """The dataset (or dataset path) an HTTP path reads, when the path tells."""
        if path.startswith("/datasets/"):
            return path[len("/datasets/"):]
        return self.implicit(path) if self.implicit is not None else None

    def check(self, method: str, path: str, authorization: bytes | str | None,
              ) -> tuple[int, str] | None:
        """The route-level rule for an HTTP request: None when allowed, else (status, why).
        Routes whose answer names datasets in other ways (listings, metrics, events, shard
        tasks) ask ``caller``/``may_read``/``hidden`` themselves."""
        caller = self.caller(authorization)
        named = path.startswith("/datasets/")
        name = self.dataset_of(path)
        # A closed dataset is closed to writes as well: an answer to a write (a version id,
        # an If-Match conflict) tells of it too.
        why = None if name is None else self.read_denied(caller, name, named=named)
        if why is None and self.is_write(method, path):
            why = self.write_denied(caller)
        return None if why is None else (401, why)

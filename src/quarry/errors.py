"""Typed errors, mapped once to HTTP statuses and CLI exit codes."""

from __future__ import annotations

from typing import Any


class QuarryError(Exception):
    """Base of every error Quarry reports to a user.

    ``status`` is the HTTP status the server answers with, ``exit_code`` what the CLI
    exits with; ``error`` is a short machine-friendly name, ``detail`` the human sentence.
    """

    status = 500
    exit_code = 1
    error = "internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.error, "detail": self.detail}
        body.update(self.extra)
        return body


class BadRequest(QuarryError):
    status = 400
    exit_code = 2
    error = "bad request"


class Malformed(BadRequest):
    """A wire message (``quarry.cluster.wire``) that is not what ``pack`` writes: bad framing,
    an unknown object, or a registered type's field of the wrong type or out of bounds."""

    error = "malformed wire message"


class Unauthorized(QuarryError):
    status = 401
    exit_code = 11
    error = "unauthorized"


class BadConfig(BadRequest):
    """A configuration file that cannot be used; the detail names the file and the key."""

    error = "bad config"


class BadUpstream(QuarryError):
    """A remote API answered with something that is not what its contract says."""

    status = 502
    exit_code = 9
    error = "bad upstream answer"


class NotFound(QuarryError):
    status = 404
    exit_code = 3
    error = "not found"


class Conflict(QuarryError):
    status = 409
    exit_code = 4
    error = "conflict"


class PreconditionFailed(QuarryError):
    status = 412
    exit_code = 4
    error = "precondition failed"


class OutOfRange(QuarryError):
    """A line or row number past the end (the line server's historical 413)."""

    status = 413
    exit_code = 5
    error = "out of range"


class PayloadTooLarge(QuarryError):
    status = 413
    exit_code = 2
    error = "payload too large"


class RequestTimeout(QuarryError):
    """A client took longer than the server's limits to send its request."""

    status = 408
    exit_code = 6
    error = "request timeout"


class Unavailable(QuarryError):
    """The data behind a dataset cannot be served as recorded (e.g. a linked file changed)."""

    status = 503
    exit_code = 6
    error = "unavailable"


class InsufficientStorage(QuarryError):
    status = 507
    exit_code = 7
    error = "insufficient storage"


class Corrupt(QuarryError):
    status = 500
    exit_code = 8
    error = "corrupt data"


class ShardUnavailable(QuarryError):
    """A shard (a worker, an actor or a remote server, named in the detail) did not answer."""

    status = 503
    exit_code = 6
    error = "shard unavailable"


class ShardTimeout(QuarryError):
    status = 504
    exit_code = 6
    error = "shard timeout"


class MissingExtra(QuarryError):
    """An optional backend was asked for but its package is not installed."""

    status = 501
    exit_code = 10
    error = "not installed"

"""Structured logging: text or JSON lines, every record tagged with the request id."""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any

import orjson

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("quarry_request_id", default="")
LOGGER = "quarry"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            out["request_id"] = rid
        for key, value in record.__dict__.items():
            if key.startswith("q_"):
                out[key[2:]] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k[2:]}={v}" for k, v in record.__dict__.items() if k.startswith("q_"))
        rid = request_id.get()
        head = f"{record.levelname.lower():7} {record.name}: {record.getMessage()}"
        tail = f" request_id={rid}" if rid else ""
        text = f"{head}{' ' + extra if extra else ''}{tail}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure(fmt: str = "text", level: str = "info") -> None:
    """Set up the ``quarry`` logger once per process (idempotent)."""
    logger = logging.getLogger(LOGGER)
    for h in list(logger.handlers):
        if getattr(h, "_quarry", False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler._quarry = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


def fields(**kw: Any) -> dict[str, Any]:
    """``extra=`` for a log call: ``log.info("...", extra=fields(dataset=..., version=...))``."""
    return {f"q_{k}": v for k, v in kw.items()}


def emit_many(logger: logging.Logger, records: list[logging.LogRecord]) -> None:
    """Hand ``records`` to the handlers ``logger.handle`` would (its own, then its parents'
    while they propagate); a plain stream handler (what ``configure`` sets up) gets them in
    one write instead of one write and flush per record."""
    records = [r for r in records if logger.filter(r)]
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        handlers += current.handlers
        current = current.parent if current.propagate else None
    if not handlers:
        for record in records:
            logger.handle(record)  # logging's last resort, as for any record
        return
    for handler in handlers:
        kept = [r for r in records if r.levelno >= handler.level and handler.filter(r)]
        if not kept:
            continue
        if not isinstance(handler, logging.StreamHandler) or (
                type(handler).emit is not logging.StreamHandler.emit):
            for record in kept:
                handler.handle(record)
            continue
        try:
            text = "".join([handler.format(r) + handler.terminator for r in kept])
            with handler.lock:  # type: ignore[union-attr]
                handler.stream.write(text)
                handler.flush()
        except Exception:
            handler.handleError(kept[0])

"""The original line server's design, for comparison: lines in an SQLite table keyed by line
number, served by the same framework Quarry uses for its API (FastAPI on uvicorn)."""

from __future__ import annotations

import os
import sqlite3
import threading

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

DB = os.environ.get("SQLITE_LINES_DB", "lines.sqlite")
app = FastAPI()
_local = threading.local()


def _conn() -> sqlite3.Connection:
    c = getattr(_local, "conn", None)
    if c is None:
        c = sqlite3.connect(f"file:{DB}?mode=ro", uri=True, check_same_thread=False)
        _local.conn = c
    return c


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/lines/{n}")
def line(n: int) -> Response:
    row = _conn().execute("SELECT text FROM lines WHERE n = ?", (n,)).fetchone()
    if row is None:
        return JSONResponse({"error": "out of range"}, status_code=413)
    return Response(row[0], media_type="text/plain; charset=utf-8")

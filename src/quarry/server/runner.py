"""Starts the HTTP server: uvicorn with Quarry's protocol, N worker processes on one socket."""

from __future__ import annotations

import os
import shutil
import tempfile

import uvicorn

from quarry.server.settings import ENV_VAR, ServeSettings

PROTOCOL = "quarry.server.protocol:QuarryHttpProtocol"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client when workers import it


def run(settings: ServeSettings) -> None:
    # Workers are separate processes (each maps the same files, so the page cache is shared);
    # they rebuild the app from these settings.
    os.environ[ENV_VAR] = settings.to_env()
    metrics_dir = None
    if settings.workers > 1:
        # Each worker writes its metric values to files here; a scrape of any worker sums them.
        metrics_dir = tempfile.mkdtemp(prefix="quarry-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
    try:
        _run(settings)
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run(settings: ServeSettings) -> None:
    uvicorn.run(
        "quarry.server.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers if settings.workers > 1 else None,
        http=PROTOCOL,
        loop="uvloop",
        lifespan="off",
        proxy_headers=False,
        server_header=False,
        access_log=False,
        log_level="warning",
        backlog=4096,
    )

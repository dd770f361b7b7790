"""Starts the HTTP server: uvicorn with Quarry's protocol, N worker processes on one socket."""

from __future__ import annotations

import os

import uvicorn

from quarry.server.settings import ENV_VAR, ServeSettings

PROTOCOL = "quarry.server.protocol:QuarryHttpProtocol"


def run(settings: ServeSettings) -> None:
    # Workers are separate processes (each maps the same files, so the page cache is shared);
    # they rebuild the app from these settings.
    os.environ[ENV_VAR] = settings.to_env()
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
        log_level=settings.log_level,
        backlog=4096,
    )

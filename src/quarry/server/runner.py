"""Starts the HTTP server: uvicorn with Quarry's protocol, N worker processes on one socket."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn

import uvicorn
from uvicorn.supervisors import Multiprocess

from quarry.errors import BadRequest, Unavailable
from quarry.server.settings import ENV_VAR, ServeSettings

PROTOCOL = "quarry.server.protocol:QuarryHttpProtocol"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client when workers import it


def check_listen(host: str, port: int) -> None:
    """Refuse early, with a clear error, when the server could not listen on host:port: before
    ``serve`` adds its file or ``up`` starts anything (uvicorn would only log and exit 3)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise BadRequest(f"--host {host!r} is not an address this machine has: {e}") from None
    # Every address the name gives: a single-process server listens on all of them.
    for family, kind, proto, addr in dict.fromkeys((i[0], i[1], i[2], i[4]) for i in infos):
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(addr)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise Unavailable(f"cannot listen on {host}:{port}: the port is in use; is "
                                      "another server running there? choose another --port"
                                      ) from None
                raise Unavailable(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def run(settings: ServeSettings) -> None:
    with shared_metrics(settings.workers):
        serve(settings)


@contextmanager
def shared_metrics(workers: int) -> Iterator[None]:
    """With several workers, a folder where each process keeps its metric values (a scrape of
    any worker sums them); removed when the server stops."""
    if workers <= 1:
        yield
        return
    metrics_dir = tempfile.mkdtemp(prefix="quarry-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def serve(settings: ServeSettings) -> None:
    """Run the HTTP server until SIGINT/SIGTERM (with several workers, uvicorn's supervisor
    starts, watches and stops them)."""
    # Workers are separate processes (each maps the same files, so the page cache is shared);
    # they rebuild the app from these settings.
    os.environ[ENV_VAR] = settings.to_env()
    _run(settings)


def _stopped(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


def exit_cleanly_on_sigterm() -> None:
    """Make the SIGTERM that uvicorn re-raises after its graceful stop end the process
    normally (exit 0) instead of killing it (exit 143).

    uvicorn saves the handler it finds, handles SIGTERM itself while serving, then restores
    the saved one and raises the signal again. With the default handler the process died of
    it: no ``finally`` blocks, no atexit handlers, so a shard pool's forkserver and resource
    tracker were left orphaned. With this one the process unwinds as after any exit."""
    signal.signal(signal.SIGTERM, _stopped)


class QuarryConfig(uvicorn.Config):
    def configure_logging(self) -> None:
        # The first thing uvicorn runs in every worker process, before the server starts
        # (and in this process when the config is made): where the handler goes in.
        super().configure_logging()
        exit_cleanly_on_sigterm()


def _run(settings: ServeSettings) -> None:
    config = QuarryConfig(
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
    # What uvicorn.run does, with this config (it makes its own).
    if config.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    config.load_app()
    server = uvicorn.Server(config=config)
    server.run()
    if not server.started:
        raise SystemExit(3)  # uvicorn's STARTUP_FAILURE: it logged why

"""``quarry up``: one process running the HTTP server, the event bus, the snapshot service's
ZeroMQ endpoint and the pipelines, stopped cleanly (in that order) on SIGINT or SIGTERM.

With one HTTP worker (the default) the server runs in this process, so a PUT wakes the bus
and the event streams directly. With ``http.workers: N`` the workers are processes of their
own and this one runs the bus, the endpoint and the pipelines: the workers' commits reach
them through the event journal, which the bus then polls every few milliseconds.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

import uvicorn
import zmq

from quarry import logs
from quarry.access import AccessPolicy
from quarry.config import Config
from quarry.engine import Engine
from quarry.events.bus import POLL, Bus
from quarry.events.compat import CompatEndpoint
from quarry.events.curve import Gatekeeper, load_keys
from quarry.events.pipelines import Outcome, Pipelines, check_stage_kinds
from quarry.server.app import create_app
from quarry.server.metrics import Metrics
from quarry.server.runner import PROTOCOL, check_listen, serve, shared_metrics
from quarry.server.settings import ServeSettings
from quarry.store import Store


def access_policy(config: Config) -> AccessPolicy:
    """The policy the HTTP app builds from the same settings (see server/app.py)."""
    return AccessPolicy(config.token, config.host, config.closed)


class Services:
    """Everything ``quarry up`` runs besides the HTTP server, started and stopped together."""

    def __init__(self, config: Config, store: Store, metrics: Metrics | None = None, *,
                 poll: float = POLL, engine: Engine | None = None) -> None:
        check_stage_kinds(config.stages)
        keys = load_keys(config.curve) if config.curve is not None else None
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.gate: Gatekeeper | None = None
        try:
            if keys is not None:
                self.gate = Gatekeeper(self.ctx, keys)
            # One access policy for the HTTP app and both ZeroMQ surfaces.
            policy = access_policy(config)
            self.bus = Bus(store, self.ctx, config.pub, legacy_endpoint=config.legacy_pub,
                           gate=self.gate, poll=poll, policy=policy)
            # Beside an in-process HTTP server, GETs resolve through its engine: HEAD and
            # names cached, moved at once by this process's commits.
            self.compat = CompatEndpoint(
                store, self.ctx, config.rep, gate=self.gate, policy=policy,
                resolve=None if engine is None else engine.resolve) if config.rep else None
        except BaseException:
            if self.gate is not None:
                self.gate.stop()
            self.ctx.destroy(linger=0)
            raise
        observer = None
        if metrics is not None:
            m = metrics
            self.bus.subscribe(lambda e: m.events.labels(e.event).inc())

            def observer(o: Outcome) -> None:
                m.pipeline_runs.labels(o.stage, o.status).inc()

        self.pipelines = Pipelines(store, config.stages, workdir=config.folder,
                                   observer=observer)
        self.bus.subscribe(self.pipelines.on_event)

    def start(self) -> None:
        self.bus.start()
        if self.compat is not None:
            self.compat.start()
        self.pipelines.start()

    def stop(self) -> None:
        # Writers first, the bus last, so the last commits are still published.
        if self.compat is not None:
            self.compat.stop()
            self.compat.join(5)
        self.pipelines.stop()
        self.bus.stop()
        self.bus.join(5)
        if self.gate is not None:
            self.gate.stop()  # its socket is the context's too: term() would wait for it
        self.ctx.term()


def run_up(config: Config, *, announce: Callable[[str], None] | None = None) -> None:
    # Pipeline runs and failures are logged with the dataset and version they concern.
    logs.configure("text", "info" if config.log_level in ("debug", "info", "warning") else
                   config.log_level)
    check_listen(config.host, config.port)  # before anything starts or is announced
    store = Store(config.data)
    store.clean_tmp()
    if config.workers > 1:
        _run_workers(config, store, announce)
        return
    engine = Engine(store)
    settings = ServeSettings(data=str(config.data), host=config.host, port=config.port,
                             log_level=config.log_level, token=config.token,
                             closed=config.closed)
    app = create_app(engine, settings)
    server = uvicorn.Server(uvicorn.Config(
        app, host=config.host, port=config.port, http=PROTOCOL, loop="uvloop",
        lifespan="off", access_log=False, log_level=config.log_level, server_header=False))
    services = Services(config, store, app.metrics, engine=engine)

    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()
        server.should_exit = True

    # Ours are the handlers uvicorn restores and re-raises captured signals to after it
    # stops serving: they only ask for the stop, and the cleanup below runs either way.
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    # The bus and the REP endpoint are threads: hand them the GIL sooner than the default
    # 5 ms after they wake, or event latency and REP round trips pay for it.
    sys.setswitchinterval(0.0005)
    try:
        services.start()
        if announce is not None:
            announce(_banner(config))
        server.run()
    finally:
        services.stop()
        for s, h in previous.items():
            signal.signal(s, h)
        print("quarry up: stopped", file=sys.stderr, flush=True)


# With HTTP workers in other processes, every commit reaches the bus through the journal:
# a poll this often keeps event latency in milliseconds (one stat() a poll when idle).
WORKER_POLL = 0.002


def _run_workers(config: Config, store: Store,
                 announce: Callable[[str], None] | None) -> None:
    settings = ServeSettings(data=str(config.data), host=config.host, port=config.port,
                             log_level=config.log_level, workers=config.workers,
                             token=config.token, closed=config.closed)
    with shared_metrics(config.workers):
        # prometheus_client chose where values live when it was imported; this process's
        # counters (events, pipeline runs) must go to the workers' shared files as well.
        from prometheus_client import values

        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        services = Services(config, store, Metrics(Engine(store)), poll=WORKER_POLL)
        sys.setswitchinterval(0.0005)
        try:
            services.start()
            if announce is not None:
                announce(_banner(config))
            serve(settings)  # uvicorn's supervisor stops the workers on SIGINT/SIGTERM
        finally:
            services.stop()
            print("quarry up: stopped", file=sys.stderr, flush=True)


def _banner(config: Config) -> str:
    workers = f" ({config.workers} workers)" if config.workers > 1 else ""
    return (f"quarry up: http://{config.host}:{config.port}{workers} · events {config.pub} · "
            f"legacy events {config.legacy_pub or 'off'} · "
            f"snapshot service {config.rep or 'off'} · "
            f"{len(config.stages)} pipeline stage(s) · data {config.data}")

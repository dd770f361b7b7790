"""Commands for events and services: up, subscribe, pipeline status/retry."""

from __future__ import annotations

import fnmatch
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from quarry.cli.common import JsonOpt, echo, emit, emit_json, errors, note
from quarry.errors import BadRequest, Unavailable

if TYPE_CHECKING:
    from quarry.config import Config
    from quarry.events.pipelines import Pipelines

# No short form: -c is --count everywhere (get, subscribe).
ConfigOpt = Annotated[Path, typer.Option("--config", help="quarry.yaml to use.")]
DEFAULT_BUS = "tcp://127.0.0.1:5100"


def _event_line(body: bytes) -> str:
    """An event for people: time, dataset, event, version (its JSON is what --json prints)."""
    try:
        e = orjson.loads(body)
        when = datetime.fromtimestamp(float(e["time"]), UTC).strftime("%Y-%m-%d %H:%M:%S")
        version = str(e.get("version") or "")[:12]
        return f"{when}  {e['dataset']}  {e['event']}  {version}".rstrip()
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return body.decode("utf-8", "replace")


def register(app: typer.Typer) -> None:
    @app.command()
    def up(config: ConfigOpt = Path("quarry.yaml")) -> None:
        """Start everything in CONFIG: HTTP server, event bus, ZeroMQ endpoint, pipelines.
        Ctrl-C or SIGTERM stops them all cleanly."""
        import dataclasses
        import os

        from quarry.config import load_config
        from quarry.up import run_up

        with errors():
            cfg = load_config(config)
            if cfg.token is None and os.environ.get("QUARRY_TOKEN"):
                # As `quarry serve --token` falls back to it.
                cfg = dataclasses.replace(cfg, token=os.environ["QUARRY_TOKEN"])
            run_up(cfg, announce=note)

    @app.command()
    def subscribe(
        pattern: Annotated[str, typer.Argument(
            help="Dataset name or glob (qplan/*); matches every dataset by default.")] = "*",
        endpoint: Annotated[str, typer.Option(
            "--endpoint", help="The bus's PUB endpoint (quarry up runs the bus).")] = DEFAULT_BUS,
        count: Annotated[int, typer.Option(
            "--count", "-c", min=0, help="Exit after this many events (0: never).")] = 0,
        connect_timeout: Annotated[float, typer.Option(
            "--connect-timeout", min=0.0,
            help="Seconds to wait for the bus to accept the subscription (0: forever).")] = 5.0,
        event: Annotated[str | None, typer.Option(
            "--event", help="Only this event: commit, alias, deleted or failed.")] = None,
        server_key: Annotated[Path | None, typer.Option(
            "--server-key", help="CURVE: the server's public certificate (NAME.key), for a "
                                 "bus bound beyond loopback.")] = None,
        key: Annotated[Path | None, typer.Option(
            "--key", help="CURVE: this client's certificate (NAME.key_secret), one the "
                          "server lets in.")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Print change events from the bus, one a line (--json: as JSON lines)."""
        import zmq

        with errors():
            curve = _client_keys(server_key, key)
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sock = ctx.socket(zmq.SUB)
        if curve is not None:
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = curve
        # Subscribe to the literal part of the pattern; the glob is checked here.
        literal = pattern.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
        sock.setsockopt(zmq.SUBSCRIBE, literal.encode())
        # Watched from before the connect: on loopback the handshake can finish before a
        # monitor attached afterwards would hear of it.
        monitor = (sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
                   if connect_timeout > 0 else None)
        try:
            try:
                sock.connect(endpoint)
            except zmq.ZMQError as e:
                with errors():
                    raise BadRequest(f"cannot subscribe to {endpoint!r}: {e}") from None
            if monitor is not None:
                with errors():
                    _await_bus(sock, monitor, endpoint, connect_timeout)
        except BaseException:
            if monitor is not None:
                monitor.close(0)
            sock.close(0)
            ctx.term()
            raise
        seen = 0
        try:
            while count == 0 or seen < count:
                frames = sock.recv_multipart()
                if len(frames) != 2:
                    continue  # not an event (e.g. an original-style publisher's notice)
                dataset, _, name = frames[0].decode("utf-8", "replace").rpartition(" ")
                if not fnmatch.fnmatchcase(dataset, pattern) or (event and name != event):
                    continue
                if as_json:
                    sys.stdout.write(frames[1].decode("utf-8", "replace") + "\n")
                    sys.stdout.flush()
                else:
                    echo(_event_line(frames[1]))
                seen += 1
        except KeyboardInterrupt:
            pass
        finally:
            sock.close(0)
            ctx.term()

    def _await_bus(sock: Any, monitor: Any, endpoint: str, timeout: float) -> None:
        """Wait until a ZeroMQ publisher completed the handshake on ``endpoint``: a SUB socket
        connecting to nothing waits silently forever (``quarry serve`` runs no bus)."""
        from zmq.utils.monitor import recv_monitor_message

        try:
            if not monitor.poll(int(timeout * 1000)):
                raise Unavailable(
                    f"no event bus answered at {endpoint} within {timeout:g} s: `quarry up` "
                    "runs the bus (`quarry serve` has none); check --endpoint, or wait "
                    "longer with --connect-timeout")
            recv_monitor_message(monitor)
        finally:
            sock.disable_monitor()
            monitor.close(0)

    def _client_keys(server_key: Path | None,
                     key: Path | None) -> tuple[bytes, bytes, bytes] | None:
        """(server public, client public, client secret) for CURVE, or None for plain."""
        if server_key is None and key is None:
            return None
        if server_key is None or key is None:
            raise BadRequest("CURVE needs both --server-key and --key")
        import zmq.auth

        try:
            server_public, _ = zmq.auth.load_certificate(server_key)
            public, secret = zmq.auth.load_certificate(key)
        except (OSError, ValueError) as e:
            raise BadRequest(f"cannot read a CURVE certificate: {e}") from None
        if secret is None:
            raise BadRequest(f"--key {key} holds no secret key; give the NAME.key_secret file")
        return server_public, public, secret

    pipeline = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                           help="Inspect and retry pipeline stages.")
    app.add_typer(pipeline, name="pipeline")

    def _pipelines(cfg: Config) -> Pipelines:
        from quarry.events.pipelines import Pipelines
        from quarry.store import Store

        return Pipelines(Store(cfg.data), cfg.stages, workdir=cfg.folder)

    @pipeline.command("status")
    def pipeline_status(config: ConfigOpt = Path("quarry.yaml"),
                        as_json: JsonOpt = False) -> None:
        """Show each stage: versions done, failures waiting for a retry."""
        from quarry.config import load_config

        with errors():
            emit(_pipelines(load_config(config)).status(), as_json)

    @pipeline.command("retry")
    def pipeline_retry(
        stage: Annotated[str | None, typer.Argument(help="Stage name (default: all).")] = None,
        config: ConfigOpt = Path("quarry.yaml"),
        as_json: JsonOpt = False,
    ) -> None:
        """Run failed transforms again now (and any source HEAD not yet processed)."""
        from quarry.config import load_config

        with errors():
            outcomes = _pipelines(load_config(config)).retry(stage)
            failed = 0
            for o in outcomes:
                failed += o.status == "failed"
                target = f" -> {o.target_version[:12]}" if o.target_version else ""
                why = f": {o.error}" if o.error else ""
                if as_json:
                    emit_json({"stage": o.stage, "source_version": o.source_version,
                               "status": o.status, "target_version": o.target_version,
                               "error": o.error})
                else:
                    echo(f"{o.stage} {o.source_version[:12]}: {o.status}{target}{why}")
            if failed:
                raise typer.Exit(1)

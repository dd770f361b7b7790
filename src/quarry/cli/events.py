"""Commands for events and services: up, subscribe, pipeline status/retry."""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from quarry.cli.common import errors, out
from quarry.config import Config, load_config
from quarry.errors import BadRequest

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="quarry.yaml to use.")]


def register(app: typer.Typer) -> None:
    @app.command()
    def up(config: ConfigOpt = Path("quarry.yaml")) -> None:
        """Start everything in CONFIG: HTTP server, event bus, ZeroMQ endpoint, pipelines.
        Ctrl-C or SIGTERM stops them all cleanly."""
        from quarry.up import run_up

        with errors():
            cfg = load_config(config)
            if cfg.token is None and os.environ.get("QUARRY_TOKEN"):
                # As `quarry serve --token` falls back to it.
                cfg = dataclasses.replace(cfg, token=os.environ["QUARRY_TOKEN"])
            run_up(cfg, announce=lambda s: print(s, file=sys.stderr, flush=True))

    @app.command()
    def subscribe(
        pattern: Annotated[str, typer.Argument(
            help="Dataset name or glob (qplan/*); matches every dataset by default.")] = "*",
        endpoint: Annotated[str, typer.Option(
            "--endpoint", "-e", help="The bus's PUB endpoint.")] = "tcp://127.0.0.1:5100",
        count: Annotated[int, typer.Option(
            "--count", "-n", min=0, help="Exit after this many events (0: never).")] = 0,
        event: Annotated[str | None, typer.Option(
            "--event", help="Only this event: commit, alias, deleted or failed.")] = None,
        server_key: Annotated[Path | None, typer.Option(
            "--server-key", help="CURVE: the server's public certificate (NAME.key), for a "
                                 "bus bound beyond loopback.")] = None,
        key: Annotated[Path | None, typer.Option(
            "--key", help="CURVE: this client's certificate (NAME.key_secret), one the "
                          "server lets in.")] = None,
    ) -> None:
        """Print change events from the bus as JSON lines, one per event."""
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
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as e:
            sock.close(0)
            ctx.term()
            with errors():
                raise BadRequest(f"cannot subscribe to {endpoint!r}: {e}") from None
        seen = 0
        try:
            while count == 0 or seen < count:
                frames = sock.recv_multipart()
                if len(frames) != 2:
                    continue  # not an event (e.g. an original-style publisher's notice)
                dataset, _, name = frames[0].decode("utf-8", "replace").rpartition(" ")
                if not fnmatch.fnmatchcase(dataset, pattern) or (event and name != event):
                    continue
                sys.stdout.write(frames[1].decode("utf-8", "replace") + "\n")
                sys.stdout.flush()
                seen += 1
        except KeyboardInterrupt:
            pass
        finally:
            sock.close(0)
            ctx.term()

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

    pipeline = typer.Typer(no_args_is_help=True, help="Inspect and retry pipeline stages.")
    app.add_typer(pipeline, name="pipeline")

    def _pipelines(cfg: Config):  # type: ignore[no-untyped-def]
        from quarry.events.pipelines import Pipelines
        from quarry.store import Store

        return Pipelines(Store(cfg.data), cfg.stages, workdir=cfg.folder)

    @pipeline.command("status")
    def pipeline_status(config: ConfigOpt = Path("quarry.yaml")) -> None:
        """Show each stage: versions done, failures waiting for a retry."""
        with errors():
            rows = _pipelines(load_config(config)).status()
            out.print_json(orjson.dumps(rows).decode())

    @pipeline.command("retry")
    def pipeline_retry(
        stage: Annotated[str | None, typer.Argument(help="Stage name (default: all).")] = None,
        config: ConfigOpt = Path("quarry.yaml"),
    ) -> None:
        """Run failed transforms again now (and any source HEAD not yet processed)."""
        with errors():
            outcomes = _pipelines(load_config(config)).retry(stage)
            failed = 0
            for o in outcomes:
                failed += o.status == "failed"
                target = f" -> {o.target_version[:12]}" if o.target_version else ""
                why = f": {o.error}" if o.error else ""
                out.print(f"{o.stage} {o.source_version[:12]}: {o.status}{target}{why}",
                          highlight=False)
            if failed:
                raise typer.Exit(1)

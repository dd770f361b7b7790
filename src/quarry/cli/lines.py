"""Commands for line datasets and the server: put, get, ls, info, serve."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from quarry.cli.common import (
    DEFAULT_DATA,
    BaseOpt,
    DataOpt,
    IndexOpt,
    check_base,
    dataset_name_for,
    err,
    errors,
    out,
    progress_bar,
    read_store,
)
from quarry.cli.shards import (
    BudgetOpt,
    OnErrorOpt,
    RayAddressOpt,
    RayOpt,
    RemoteOpt,
    ReplicasOpt,
    ShardsOpt,
    ShardWorkersOpt,
    TimeoutOpt,
    check_backend,
    parse_size,
)
from quarry.cluster.dispatcher import DEFAULT_SHARDS
from quarry.datasets.lines import parse_line_number, put_lines, put_lines_stream
from quarry.engine import Engine
from quarry.errors import BadRequest
from quarry.server.settings import ServeSettings
from quarry.store import CommitResult, Store
from quarry.store.refs import check_dataset_name

SERVE = ServeSettings()  # the defaults
HeaderTimeoutOpt = Annotated[float, typer.Option(
    "--header-timeout", min=0.001,
    help="Seconds from a request's first byte to the end of its headers.")]
BodyTimeoutOpt = Annotated[float, typer.Option(
    "--body-timeout", min=0.001, help="Seconds a request body may pause between two reads.")]
KeepAliveOpt = Annotated[float, typer.Option(
    "--keep-alive-timeout", min=0.001,
    help="Seconds a connection may stay idle before its first request and between requests.")]


def _put_file(store: Store, name: str, file: Path, link: bool, index: str,
              message: str) -> CommitResult:
    check_dataset_name(name)
    if str(file) == "-":
        if link:
            raise BadRequest("--link needs a file, not standard input")
        blocks = iter(lambda: sys.stdin.buffer.read(8 << 20), b"")
        return put_lines_stream(store, name, blocks, mode=index, message=message)
    size = file.stat().st_size if file.is_file() else 0
    with progress_bar(size, f"indexing {file.name}") as progress:
        return put_lines(store, name, file, link=link, mode=index, message=message,
                         progress=progress)


def _report(res: CommitResult) -> None:
    lines = res.snapshot.meta.get("lines")
    what = "new version" if res.created else "unchanged, no new version"
    count = f", {lines:,} line{'' if lines == 1 else 's'}" if lines is not None else ""
    out.print(f"{res.snapshot.dataset}: {what} {res.version[:12]} "
              f"({res.snapshot.size} bytes{count})", highlight=False)


def _clean(store: Store) -> None:
    """Remove temp files that killed writers left (they pile up: hundreds of MB each)."""
    stale = store.clean_tmp()
    if stale.count:
        err.print(f"removed {stale.count} stale temp file(s) of dead writers "
                  f"({stale.bytes:,} bytes)", highlight=False)


def _demo_file() -> Path:
    return Path(str(resources.files("quarry") / "demo" / "frankenstein.txt"))


def register(app: typer.Typer) -> None:
    @app.command()
    def put(
        name: Annotated[str, typer.Argument(help="Dataset name, e.g. weblogs or qplan/raw.")],
        file: Annotated[Path, typer.Argument(help="Text file to add ('-' for standard input).")],
        link: Annotated[bool, typer.Option(
            "--link", help="Index the file in place, no copy.")] = False,
        index: IndexOpt = "auto",
        message: Annotated[str, typer.Option("--message", "-m")] = "",
        kind: Annotated[str | None, typer.Option(
            "--kind", help="lines or document (default: the dataset's kind, else lines).")] = None,
        if_match: Annotated[str | None, typer.Option(
            "--if-match", help="Fail (exit 4) unless HEAD is this version.")] = None,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Add FILE as a new version of dataset NAME."""
        from quarry.cli.versions import put_version

        with errors():
            store = Store(data)
            _clean(store)
            if kind not in (None, "lines") or if_match is not None or (
                    kind is None and store.head(check_dataset_name(name)) is not None
                    and store.snapshot(store.require_head(name)).kind != "lines"):
                _report(put_version(store, name, file, kind, message, if_match, index, link))
                return
            _report(_put_file(store, name, file, link, index, message))


    @app.command()
    def get(
        name: str,
        n: Annotated[str, typer.Argument(help="Line number.")],
        count: Annotated[int, typer.Option("--count", "-c", min=1, max=1_000_000)] = 1,
        version: Annotated[str | None, typer.Option("--version", "-v")] = None,
        index_base: BaseOpt = 1,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Print line N of dataset NAME (or COUNT lines from N)."""
        with errors():
            view = Engine(read_store(data)).lines(name, version)
            i = parse_line_number(n, check_base(index_base))
            first = view.line(i, index_base)
            if count == 1:
                sys.stdout.buffer.write(first + b"\n")
            else:
                for piece in view.index.iter_text(i, count):
                    sys.stdout.buffer.write(piece)
            sys.stdout.flush()


    @app.command("ls")
    def list_datasets(
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """List datasets with their kind, size and version."""
        with errors():
            rows = Engine(read_store(data)).datasets()
            if as_json:
                out.print_json(orjson.dumps(rows).decode())
                return
            if not rows:
                out.print(f"no datasets in {data} (add one with `quarry put NAME FILE`)",
                          highlight=False)
                return
            table = Table("name", "kind", "version", "size", "lines / rows", "versions")
            for r in rows:
                count = r.get("lines", r.get("rows"))
                table.add_row(r["name"], r["kind"], r["version"][:12], f"{r['size']:,}",
                              "" if count is None else f"{count:,}", str(r["versions"]))
            out.print(table)


    @app.command()
    def info(name: str, data: DataOpt = DEFAULT_DATA) -> None:
        """Show a dataset's metadata as JSON."""
        with errors():
            out.print_json(orjson.dumps(Engine(read_store(data)).describe(name)).decode())



    @app.command()
    def serve(
        file: Annotated[Path | None, typer.Argument(
            help="Text file to serve (added first).")] = None,
        data: DataOpt = DEFAULT_DATA,
        host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8080,
        workers: Annotated[int, typer.Option("--workers", min=1, max=64)] = 1,
        index_base: BaseOpt = 1,
        name: Annotated[str | None, typer.Option("--name", help="Dataset name for FILE.")] = None,
        default: Annotated[str | None, typer.Option(
            "--default", help="Dataset answered by /lines/<n>.")] = None,
        link: Annotated[bool, typer.Option("--link", help="Index FILE in place.")] = False,
        index: IndexOpt = "auto",
        demo: Annotated[bool, typer.Option("--demo", help="Serve the bundled demo file.")] = False,
        token: Annotated[str | None, typer.Option(
            "--token", envvar="QUARRY_TOKEN",
            help="Bearer token for writes (required for writes beyond loopback).")] = None,
        closed: Annotated[list[str] | None, typer.Option(
            "--closed", help="Dataset whose reads need the token (repeatable).")] = None,
        log_format: Annotated[str, typer.Option("--log-format", help="text or json")] = "text",
        log_level: Annotated[str, typer.Option("--log-level")] = "info",
        shards: ShardsOpt = DEFAULT_SHARDS,
        shard_workers: ShardWorkersOpt = 0,
        ray: RayOpt = False,
        ray_address: RayAddressOpt = None,
        remote: RemoteOpt = None,
        replicas: ReplicasOpt = 1,
        on_shard_error: OnErrorOpt = "fail",
        shard_timeout: TimeoutOpt = 30.0,
        memory_budget: BudgetOpt = None,
        header_timeout: HeaderTimeoutOpt = SERVE.header_timeout,
        body_timeout: BodyTimeoutOpt = SERVE.body_timeout,
        keep_alive_timeout: KeepAliveOpt = SERVE.keep_alive_timeout,
    ) -> None:
        """Serve FILE and every dataset in the data folder over HTTP."""
        from quarry.server.runner import check_listen, run

        with errors():
            check_base(index_base)
            check_listen(host, port)
            store = Store(data)
            _clean(store)
            heads, damaged = store.heads()
            for bad, why in damaged.items():
                err.print(f"skipped dataset {bad}: {why}", highlight=False, markup=False,
                          soft_wrap=True)
            if demo and file is None:
                file = _demo_file()
                name = name or "demo"
            if file is not None:
                name = name or dataset_name_for(file)
                _report(_put_file(store, name, file, link, index, "added by quarry serve"))
                default = default or name
            if file is not None:
                heads = store.heads()[0]
            if default is None:
                lines = [d for d, snap in heads.items() if snap.kind == "lines"]
                default = lines[0] if len(lines) == 1 else None
            if default is not None:
                store.require_head(default)
            if log_format not in ("text", "json"):
                raise BadRequest(f"--log-format must be text or json, got {log_format!r}")
            if log_level.lower() not in ("debug", "info", "warning", "error"):
                raise BadRequest("--log-level must be debug, info, warning or error")
            settings = ServeSettings(data=str(data.resolve()), host=host, port=port,
                                     workers=workers, index_base=index_base,
                                     default_dataset=default, token=token,
                                     closed=tuple(closed or ()), log_format=log_format,
                                     log_level=log_level.lower(), shards=shards,
                                     shard_workers=shard_workers, ray=ray,
                                     ray_address=ray_address, remote=tuple(remote or ()),
                                     replicas=replicas, on_shard_error=on_shard_error,
                                     shard_timeout=shard_timeout,
                                     memory_budget=parse_size(memory_budget),
                                     header_timeout=header_timeout,
                                     body_timeout=body_timeout,
                                     keep_alive_timeout=keep_alive_timeout)
            check_backend(shard_workers, ray, ray_address, remote, on_shard_error, workers)
            if token is None and host not in ("127.0.0.1", "localhost", "::1"):
                out.print("[yellow]warning:[/yellow] listening beyond loopback without "
                          "--token: every write will be refused")
            out.print(f"serving {len(heads)} dataset(s) from {data} on "
                      f"http://{host}:{port} (default: {default or 'none'}; "
                      f"{workers} worker(s); API docs at /docs)", highlight=False)
        run(settings)
